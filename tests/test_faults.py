"""Faults of the machine, not of the input: read-only and full disks, output paths that cannot
be files, and writers killed mid-write. Every command answers in one line naming the path and
the OS reason (exit 1, no traceback) and never leaves half a file or a temporary file behind.

Full disks and (as root) read-only folders are real: a small tmpfs mounted for the test. Not
root: read-only is a folder without write permission, and the full-disk tests are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs.cli import main
from napari_acs.io.files import WriteError, atomic_path, atomic_write_text, remove_stale_temporaries
from nifti_cases import write_case

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------- fault folders


def _mount_tmpfs(path: Path, options: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "napari-acs-test", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    return path


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@dataclass
class ReadOnly:
    """A folder nothing can be written to, and the OS reason a write gets there."""

    path: Path
    reason: str


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[ReadOnly]:
    folder = tmp_path / "read_only"
    if ROOT:  # root writes through permissions: a read-only file system instead
        yield ReadOnly(_mount_tmpfs(folder, "ro,size=1m"), "Read-only file system")
        _unmount(folder)
    else:
        folder.mkdir()
        folder.chmod(0o555)
        yield ReadOnly(folder, "Permission denied")
        folder.chmod(0o755)


class FullDisk:
    """A small tmpfs that :meth:`fill` fills to the last byte and :meth:`free` empties again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        descriptor = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (bytes(2**20), bytes(4096), bytes(1)):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(descriptor, chunk)
        finally:
            os.close(descriptor)
        with pytest.raises(OSError) as info:
            (self.path / "probe").write_bytes(b"x")
        assert info.value.errno == errno.ENOSPC
        (self.path / "probe").unlink(missing_ok=True)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    if not ROOT:
        pytest.skip("a full disk is simulated with a small tmpfs, which only root may mount (not root here)")
    folder = _mount_tmpfs(tmp_path / "full", "size=128m")
    yield FullDisk(folder)
    _unmount(folder)


def cli(*args: str) -> tuple[int, str]:
    """``napari-acs ARGS`` in this process: (exit code, stderr). A traceback would raise here."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def one_error_line(stderr: str, command: str) -> str:
    """The ``napari-acs COMMAND: error: ...`` line of ``stderr``; it must be the only error line."""
    lines = [line for line in stderr.splitlines() if line.startswith(f"napari-acs {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".tmp" in p.name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from napari_acs.models import create_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "lite0.safetensors"
    return save_checkpoint(create_model("tf_efficientnet_lite0", conv="acs", pretrained=False), path,
                           patch_size=[32, 32, 32])


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    for i, letter in enumerate("ABC"):
        write_case(tmp_path / "cohort" / letter, case_id=f"case{letter}", seed=i)
    return tmp_path / "cohort"


# ---------------------------------------------------------------------------- the helper itself


def test_a_refused_write_names_the_destination_and_leaves_the_old_file(full_disk: FullDisk) -> None:
    table = atomic_write_text(full_disk.path / "volumes.csv", "case_id\nold\n")
    full_disk.fill()
    with pytest.raises(WriteError) as info:
        atomic_write_text(table, "case_id\n" + "new\n" * 10_000)
    assert str(info.value) == f"cannot write {table}: No space left on device"
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(table)
    assert table.read_text() == "case_id\nold\n" and temporaries(full_disk.path) == []
    again = pickle.loads(pickle.dumps(info.value))  # sent between torchrun processes as it is
    assert str(again) == str(info.value) and again.errno == errno.ENOSPC


def test_a_segmentation_on_a_full_disk_is_refused_whole(tmp_path: Path, full_disk: FullDisk) -> None:
    from napari_acs.io import BratsInputError, load_case, save_segmentation

    case = load_case(write_case(tmp_path / "case")["t1"])
    full_disk.fill()
    target = full_disk.path / "case01_seg.nii.gz"
    with pytest.raises(BratsInputError) as info:
        save_segmentation(case.label, case, target)
    assert str(info.value) == f"{target}: cannot be written: No space left on device"
    assert not target.exists() and temporaries(full_disk.path) == []


# ---------------------------------------------------------------------------- read-only folders


def test_segment_into_a_read_only_folder_is_one_line(cohort: Path, checkpoint: Path, read_only: ReadOnly) -> None:
    for out in (read_only.path, read_only.path / "new"):
        code, stderr = cli("segment", str(cohort), "--out", str(out), "--checkpoint", str(checkpoint),
                           "--device", "cpu", "--no-progress")
        line = one_error_line(stderr, "segment")
        assert code == 1 and str(out) in line and read_only.reason in line, line
    assert list(read_only.path.iterdir()) == []


def test_finetune_into_a_read_only_folder_is_refused_before_loading(cohort: Path, read_only: ReadOnly) -> None:
    code, stderr = cli("finetune", str(cohort), "--out", str(read_only.path / "run"), "--patch-size", "32",
                       "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu", "--no-progress")
    line = one_error_line(stderr, "finetune")
    assert code == 1 and f"cannot create folder {read_only.path / 'run'}: {read_only.reason}" in line, line
    assert "loading case" not in stderr and list(read_only.path.iterdir()) == []


@pytest.mark.parametrize("where", ["read-only folder", "existing folder", "missing folder"])
def test_evaluate_out_that_cannot_be_written_is_refused_before_the_work(
    tmp_path: Path, read_only: ReadOnly, where: str
) -> None:
    files = write_case(tmp_path / "refs" / "a", case_id="caseA")
    (tmp_path / "pred").mkdir()
    os.link(files["seg"], tmp_path / "pred" / "caseA_seg.nii.gz")
    out, reason = {
        "read-only folder": (read_only.path / "metrics.csv", read_only.reason),
        "existing folder": (tmp_path / "pred", "it is a folder; give a file name"),
        "missing folder": (tmp_path / "nodir" / "metrics.csv", f"its folder {tmp_path / 'nodir'} does not exist"),
    }[where]
    code, stderr = cli("evaluate", str(tmp_path / "pred"), str(tmp_path / "refs"), "--out", str(out))
    line = one_error_line(stderr, "evaluate")
    assert code == 1 and line.endswith(f"cannot write {out}: {reason}"), line
    assert not (tmp_path / "nodir").exists() and list(read_only.path.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["caseA_seg.nii.gz"]


# ---------------------------------------------------------------------------- full disks


def test_segment_on_a_full_disk_is_one_line_and_writes_nothing(cohort: Path, checkpoint: Path,
                                                               full_disk: FullDisk) -> None:
    full_disk.fill()
    out = full_disk.path / "out"
    code, stderr = cli("segment", str(cohort), "--out", str(out), "--checkpoint", str(checkpoint),
                       "--device", "cpu", "--no-progress")
    line = one_error_line(stderr, "segment")
    assert code == 1 and line.endswith(f"cannot write {out / 'run.json'}: No space left on device"), line
    assert not list(out.glob("*.nii.gz")) and not (out / "run.json").exists() and temporaries(out) == []


def test_a_disk_filling_up_mid_cohort_loses_nothing(cohort: Path, checkpoint: Path, full_disk: FullDisk) -> None:
    """The disk fills while the second case computes: whatever was written is whole, the run
    stops with the path and the reason, and --skip-existing then finishes the cohort."""
    from napari_acs.inference.batch import segment_cases
    from napari_acs.models import load_model

    out = full_disk.path / "out"
    cases = sorted(cohort.iterdir())

    def fill_at_the_second_case(fraction: float, message: str) -> None:
        if message.startswith("case 2/") and not full_disk._filler.exists():
            full_disk.fill()

    model = load_model(checkpoint)
    stopped: list[str] = []
    try:
        results = segment_cases(cases, out, model, device="cpu", progress=fill_at_the_second_case)
        assert any(r.error and "No space left on device" in r.error for r in results)
    except WriteError as exc:  # a table rewrite could not be written
        assert exc.errno == errno.ENOSPC and Path(exc.filename).parent == out
        stopped.append(str(exc))
    written = sorted(out.glob("*_seg.nii.gz"))
    assert written[:1] == [out / "caseA_seg.nii.gz"]  # the first case was done before the disk filled
    for path in written:  # whole files only
        assert np.asarray(nib.load(path).dataobj).shape == (24, 20, 16)
    if (out / "volumes.csv").exists():
        rows = list(csv.DictReader((out / "volumes.csv").open()))
        assert all((out / r["segmentation"]).is_file() for r in rows if not r["error"])
    assert temporaries(out) == []

    full_disk.free()
    again = segment_cases(cases, out, model, device="cpu", skip_existing=True)
    assert [r.error for r in again] == [None, None, None]
    assert [r.skipped for r in again][:1] == [True]
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["caseA_seg.nii.gz", "caseB_seg.nii.gz",
                                                              "caseC_seg.nii.gz"]


def test_evaluate_on_a_full_disk_is_one_line(tmp_path: Path, full_disk: FullDisk) -> None:
    files = write_case(tmp_path / "refs" / "a", case_id="caseA")
    (tmp_path / "pred").mkdir()
    os.link(files["seg"], tmp_path / "pred" / "caseA_seg.nii.gz")
    full_disk.fill()
    out = full_disk.path / "metrics.csv"
    code, stderr = cli("evaluate", str(tmp_path / "pred"), str(tmp_path / "refs"), "--out", str(out))
    line = one_error_line(stderr, "evaluate")
    assert code == 1 and line.endswith(f"cannot write {out}: No space left on device"), line
    assert not out.exists() and temporaries(full_disk.path) == []


def test_finetune_survives_a_full_disk_at_a_checkpoint(full_disk: FullDisk, tmp_path: Path) -> None:
    """The disk fills during epoch 2: saving its checkpoint fails naming the file; epoch 1's
    checkpoint and training state are intact, and --resume after freeing space finishes."""
    from napari_acs.models import load_model
    from napari_acs.training import finetune
    from napari_acs.training.config import FinetuneConfig
    from napari_acs.training.state import load_state

    for i in range(2):
        write_case(tmp_path / "cohort" / str(i), case_id=f"case{i}", seed=i)
    run = full_disk.path / "run"
    common = dict(model="tf_efficientnet_lite0", patch_size=32, batch_size=2, epochs=2, steps_per_epoch=1,
                  val_fraction=0.0, pretrained=False, device="cpu")

    def fill_in_epoch_2(event: dict) -> None:
        if event["event"] == "step" and event["epoch"] == 2:
            full_disk.fill()

    with pytest.raises(WriteError) as info:
        finetune(FinetuneConfig(tmp_path / "cohort", run, **common), on_event=fill_in_epoch_2)
    assert info.value.errno == errno.ENOSPC and Path(info.value.filename).parent == run
    assert "No space left on device" in str(info.value)
    assert temporaries(run) == []
    assert load_state(run)["epoch"] == 1
    assert load_model(run / "last.safetensors").checkpoint_meta["training"]["epochs_completed"] == 1

    full_disk.free()
    resumed = finetune(FinetuneConfig(tmp_path / "cohort", run, **common, resume=True))
    assert resumed.epochs_completed == 2 and load_state(run)["epoch"] == 2


# ---------------------------------------------------------------------------- killed writers


def _killed_while_writing(folder: Path, name: str) -> Path:
    """A real process killed (SIGKILL) in the middle of an atomic write: the temporary file it
    leaves behind."""
    code = ("import os, signal, sys\n"
            "from napari_acs.io.files import atomic_path\n"
            "with atomic_path(sys.argv[1], overwrite=True) as tmp:\n"
            "    tmp.write_bytes(b'half a checkpoint' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(folder / name)], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]
    assert len(left) == 1 and not (folder / name).exists()
    return left[0]


def test_temporary_files_of_killed_writers_are_removed_by_the_next_run(tmp_path: Path) -> None:
    from napari_acs.training.config import FinetuneConfig
    from napari_acs.training.state import prepare_run_folder

    run = tmp_path / "run"
    run.mkdir()
    killed = [_killed_while_writing(run, name) for name in ("best.safetensors", "training_state.pt")]
    assert killed[0].name.endswith(".tmp.safetensors") and killed[1].name.endswith(".tmp.pt")
    old = run / ".last.safetensors.0123abcd.tmp.safetensors"  # an older napari-acs's name: no pid
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    with atomic_path(run / "history.csv") as live:  # this process is alive: its file is kept
        live.write_text("epoch\n")
        prepare_run_folder(FinetuneConfig(tmp_path, run))
        assert live.exists()
        assert sorted(p.name for p in run.iterdir()) == [live.name]
    assert sorted(p.name for p in run.iterdir()) == ["history.csv"]
    assert remove_stale_temporaries(run) == []


def test_segment_removes_what_a_killed_segment_left(cohort: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    left = _killed_while_writing(out, "caseA_seg.nii.gz")
    assert left.name.endswith(".tmp.nii.gz")
    code, stderr = cli("segment", str(cohort / "A"), "--out", str(out), "--checkpoint", str(checkpoint),
                       "--device", "cpu", "--no-progress")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".napari-acs.lock")) == [
        "caseA_seg.nii.gz", "run.json", "volumes.csv"]


def test_every_write_is_flushed_renamed_then_its_folder_flushed(tmp_path: Path, monkeypatch) -> None:
    """The checkpoint writer (and every other): fsync of the file, rename, fsync of the folder."""
    import stat

    from napari_acs.models import create_model, save_checkpoint

    model = create_model("mobilenetv2_100", pretrained=False)
    calls: list[str] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(descriptor: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file")
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), replace(a, b))[1])
    save_checkpoint(model, tmp_path / "model.safetensors")
    assert calls == ["fsync file", "rename", "fsync folder"]
