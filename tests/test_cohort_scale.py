"""Cohorts at scale: one engine reads ahead and writes behind; torchrun shares the cases among processes."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs.inference import Segmenter
from napari_acs.inference.batch import segment_cases
from napari_acs.synthetic import make_cohort
from napari_acs.models import create_model, save_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, 5, seed=2, shape=(48, 48, 40), workers=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = create_model("mobilenetv2_100", pretrained=False)
    return save_checkpoint(model, tmp_path_factory.mktemp("model") / "seg.safetensors", patch_size=[32, 32, 32])


def table(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))}


def test_the_table_grows_as_cases_finish_and_a_bad_case_does_not_stop_the_others(cohort, checkpoint, tmp_path):
    cases = sorted(p for p in cohort.iterdir() if p.is_dir())
    bad = tmp_path / "BraTS2021_09999"  # a case whose FLAIR was cut short in transfer
    shutil.copytree(cases[3], bad)
    for old in bad.iterdir():
        old.rename(bad / old.name.replace(cases[3].name, bad.name))
    flair = bad / f"{bad.name}_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:2000])
    seen_rows: list[int] = []
    out = tmp_path / "out"

    def progress(fraction: float, message: str) -> None:
        if (out / "volumes.csv").is_file():
            seen_rows.append(len(table(out / "volumes.csv")))

    engine = Segmenter.from_checkpoint(checkpoint, device="cpu")
    results = segment_cases([cases[0], bad, *cases[1:3]], out, engine, progress=progress)
    assert [r.error is None for r in results] == [True, False, True, True]
    rows = table(out / "volumes.csv")
    assert [r["case_id"] for r in rows] == [cases[0].name, bad.name, cases[1].name, cases[2].name]
    assert 0 < min(seen_rows) < 4  # rows were there before the run ended
    assert sorted(labels(out)) == [f"{c.name}_seg.nii.gz" for c in cases[:3]]


def test_duplicate_ids_a_busy_folder_and_skip_existing(cohort, checkpoint, tmp_path):
    import fcntl

    from napari_acs.inference.batch import LOCK_FILE, OutputFolderBusy
    from napari_acs.io import BratsInputError

    cases = sorted(p for p in cohort.iterdir() if p.is_dir())
    engine = Segmenter.from_checkpoint(checkpoint, device="cpu")
    out = tmp_path / "out"
    twin = tmp_path / "elsewhere" / cases[0].name  # the same case id in another folder
    shutil.copytree(cases[0], twin)
    with pytest.raises(BratsInputError, match=f"case {cases[0].name} is also given as"):
        segment_cases([cases[0], cases[1], twin], out, engine, overwrite=True)
    assert not out.exists()  # refused before anything was written

    out.mkdir()
    with open(out / LOCK_FILE, "a") as other:  # another command holds the folder
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputFolderBusy, match="another napari-acs command is writing"):
            segment_cases(cases[:2], out, engine)
    assert not (out / "volumes.csv").exists()

    first = segment_cases(cases[:2], out, engine)  # an "interrupted" run: two cases done
    written = {r.case_id: r.output.stat().st_mtime_ns for r in first}
    with pytest.raises(FileExistsError, match="--skip-existing"):
        segment_cases(cases[:4], out, engine)
    again = segment_cases(cases[:4], out, engine, skip_existing=True)
    assert [r.skipped for r in again] == [True, True, False, False] and not any(r.error for r in again)
    assert {r.case_id: r.output.stat().st_mtime_ns for r in again[:2]} == written  # kept, not rewritten
    for kept, earlier in zip(again[:2], first):  # from the earlier table (3 decimals)
        assert kept.volumes_ml == pytest.approx(earlier.volumes_ml, abs=1e-3)
    assert [r["case_id"] for r in table(out / "volumes.csv")] == [c.name for c in cases[:4]]


@pytest.mark.slow
def test_torchrun_two_processes_share_the_cases_and_merge_one_table(cohort, checkpoint, tmp_path):
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    args = [str(cohort), "--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress"]
    one = subprocess.run([sys.executable, "-m", "napari_acs.inference", *args, "--out", str(alone)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*TORCHRUN, "-m", "napari_acs.inference", *args, "--out", str(shared)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert [r["case_id"] for r in table(shared / "volumes.csv")] == [r["case_id"] for r in table(alone / "volumes.csv")]
    assert not list(shared.glob("volumes.rank*.csv"))  # the partial tables were merged away
    mine, theirs = labels(alone), labels(shared)
    assert mine.keys() == theirs.keys() and len(mine) == 5
    for name, seg in mine.items():  # the same model: the same labels, up to rounding at the threshold
        assert np.mean(seg == theirs[name]) > 0.999, name


FAILING_RANK = """
    import os, sys
    from napari_acs.inference import engine
    from napari_acs.inference.__main__ import main

    real_init = engine.Segmenter.__init__

    def init(self, *args, **kwargs):  # the fault: process 1 cannot build its engine (say, a lost GPU)
        if os.environ["RANK"] == "1":
            raise RuntimeError("no device for process 1")
        real_init(self, *args, **kwargs)

    engine.Segmenter.__init__ = init
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_failing_process_reports_its_cases_and_the_other_finishes(cohort, checkpoint, tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(textwrap.dedent(FAILING_RANK))
    out = tmp_path / "out"
    done = subprocess.run([*TORCHRUN, str(script), str(cohort), "--checkpoint", str(checkpoint),
                           "--device", "cpu", "--no-progress", "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "process 1 of 2 failed: " in done.stderr and "no device for process 1" in done.stderr
    rows = table(out / "volumes.csv")
    assert len(rows) == 5
    assert [r["error"] == "" for r in rows] == [True, False, True, False, True]  # cases 1, 3 were process 1's
    assert all("no device for process 1" in r["error"] for r in rows[1::2])
    assert len(labels(out)) == 3


MMAPPED_BLOCKS = textwrap.dedent("""
    import ctypes, sys
    from napari_acs.cli_support import keep_freed_memory_for_reuse, return_freed_memory_promptly

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        print("no-glibc"); raise SystemExit
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    setting = {"promptly": return_freed_memory_promptly, "reuse": keep_freed_memory_for_reuse}.get(sys.argv[1])
    assert setting is None or setting()
    libc.free(libc.malloc(16 << 20))  # glibc's own rule now keeps blocks below 16 MiB on the heap
    before = libc.mallinfo2().hblks
    blocks = [libc.malloc(2 << 20) for _ in range(4)]  # a case's mid-size arrays
    blocks.append(libc.malloc(100 << 20))  # an activation
    print(libc.mallinfo2().hblks - before)
""")


@pytest.mark.parametrize(("setting", "mapped"), [("default", 1), ("promptly", 5), ("reuse", 0)])
def test_the_commands_memory_settings_decide_which_blocks_are_mapped(setting: str, mapped: int) -> None:
    """Mapped blocks go back to the OS when freed (a cohort's flat memory); heap blocks are
    kept and reused (a training step's activations, without the kernel zeroing fresh pages)."""
    out = subprocess.run([sys.executable, "-c", MMAPPED_BLOCKS, setting], env=ENV, capture_output=True, text=True,
                         check=True).stdout.strip()
    if out == "no-glibc":
        pytest.skip("the C library is not glibc: the settings do not apply")
    assert int(out) == mapped


def test_the_training_command_keeps_memory_for_reuse(monkeypatch) -> None:
    from napari_acs.cli_support import CLIError
    from napari_acs.training import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory_for_reuse", lambda: calls.append(1) or True)
    monkeypatch.setattr(cli, "config_from_args", lambda args: (_ for _ in ()).throw(CLIError("stop here")))
    with pytest.raises(CLIError, match="stop here"):
        cli._run(cli.argparse.Namespace(no_progress=True), "finetune")
    assert calls == [1]


def test_the_segment_command_sets_the_memory_setting(monkeypatch, tmp_path) -> None:
    from napari_acs.inference import cli

    calls = []
    monkeypatch.setattr(cli, "return_freed_memory_promptly", lambda: calls.append(1) or True)
    with pytest.raises(cli.CLIError):
        cli.run_segment(cli.argparse.Namespace(inputs=[], sequence_files=None))
    assert calls == [1]
