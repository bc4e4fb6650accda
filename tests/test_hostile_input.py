"""Hostile input: forged headers, gzip bombs and bad label values are refused, naming the file,
before any large array is allocated or decompressed."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs.io import BratsInputError, load_case
from napari_acs.io.nifti import MAX_VOXELS, open_nifti
from nifti_cases import write_case

BOMB = 256 * 2**20  # zero bytes after the header: ~250 KB on disk


def nifti_header_bytes(shape: tuple[int, ...], dtype=np.int16) -> bytes:
    """A valid single-file header claiming ``shape``: NIfTI-1 (voxels at byte 352), or NIfTI-2
    (voxels at byte 544) for sizes above NIfTI-1's 32767."""
    header = nib.Nifti1Header() if max(shape) < 2**15 else nib.Nifti2Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header["vox_offset"] = header.sizeof_hdr + 4
    return header.binaryblock + b"\0" * 4


def gzip_bomb(path: Path, shape: tuple[int, ...], zeros: int) -> Path:
    """A .nii.gz with a header claiming ``shape`` followed by ``zeros`` zero bytes, compressed
    in chunks (a few MB on disk)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(64 * 2**20)
    parts = [packer.compress(nifti_header_bytes(shape))]
    for _ in range(zeros // len(chunk)):
        parts.append(packer.compress(chunk))
    parts.append(packer.flush())
    path.write_bytes(b"".join(parts))
    return path


@pytest.fixture
def case_files(tmp_path: Path) -> dict[str, Path]:
    return write_case(tmp_path / "BraTS_case")


def test_a_forged_header_is_refused_before_allocating(case_files, tmp_path: Path) -> None:
    huge = (100_000, 100_000, 100_000)
    for name, data in (("compressed", gzip.compress(nifti_header_bytes(huge))),
                       ("plain", nifti_header_bytes(huge))):
        target = case_files["t2"] if name == "compressed" else tmp_path / "forged.nii"
        target.write_bytes(data)
        with pytest.raises(BratsInputError, match="1,000,000,000,000,000 voxels, more than the") as info:
            open_nifti(target)
        assert info.value.path == target
    with pytest.raises(BratsInputError) as info:
        load_case(case_files["t1"])
    assert info.value.path == case_files["t2"] and f"{MAX_VOXELS:,}" in str(info.value)


def test_a_gzip_bomb_is_refused_without_decompressing_it(case_files) -> None:
    """A valid 48 x 40 x 32 header, then 256 MiB of zeros: refused after the stated size, not read
    whole (the 2 GiB bomb of the issue: refused in 0.01 s, +2.5 MB, benchmarks/RESULTS.md)."""
    gzip_bomb(case_files["flair"], (48, 40, 32), BOMB)
    assert case_files["flair"].stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(BratsInputError, match="decompresses to more than the 123,232 bytes") as info:
            load_case(case_files["t1"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == case_files["flair"]
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB while refusing a gzip bomb"


def test_a_bomb_claiming_a_huge_volume_is_refused_at_its_header(case_files) -> None:
    gzip_bomb(case_files["t1ce"], (1400, 1400, 700), 0)  # 1.4 G voxels: 2.6 GiB of int16 claimed
    with pytest.raises(BratsInputError, match="more than the") as info:
        load_case(case_files["t1"])
    assert info.value.path == case_files["t1ce"]


def write_prediction(folder: Path, case_id: str, labels: np.ndarray, affine: np.ndarray, dtype) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case_id}_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(dtype), affine), path)
    return path


@pytest.mark.parametrize("bad, dtype, message", [
    (5, np.int16, "label values 5 unknown to the brats2021 convention"),
    (-1, np.int16, "label values -1 unknown"),
    (1.5, np.float32, "non-integer label values (1.5)"),
    (np.nan, np.float32, "NaN or infinite values"),
])
def test_evaluate_refuses_bad_label_values(case_files, tmp_path: Path, bad, dtype, message) -> None:
    seg = nib.load(case_files["seg"])
    labels = np.asarray(seg.dataobj).astype(np.float32)
    labels[labels > 0][:1] = bad
    labels.flat[int(np.flatnonzero(labels > 0)[0])] = bad
    case_id = case_files["seg"].name.split("_seg")[0]
    pred = write_prediction(tmp_path / "pred", case_id, labels, seg.affine, dtype)
    done = subprocess.run([sys.executable, "-m", "napari_acs.cli", "evaluate", str(tmp_path / "pred"),
                           str(case_files["seg"].parent), "--out", str(tmp_path / "metrics.csv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(pred) in done.stderr and message in done.stderr
    assert not (tmp_path / "metrics.csv").exists()


def test_evaluate_refuses_a_prediction_of_another_shape_before_reading_it(case_files, tmp_path: Path) -> None:
    case_id = case_files["seg"].name.split("_seg")[0]
    (tmp_path / "pred").mkdir()
    bomb = gzip_bomb(tmp_path / "pred" / f"{case_id}_seg.nii.gz", (480, 480, 310), BOMB)
    from napari_acs.metrics.evaluate import evaluate_folders

    tracemalloc.start()
    try:
        with pytest.raises(BratsInputError, match="differs from the expected") as info:
            evaluate_folders(tmp_path / "pred", case_files["seg"].parent)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == bomb and "shape of the reference" in str(info.value)
    assert peak < 100 * 2**20


def test_an_ordinary_case_still_loads(case_files, tmp_path: Path) -> None:
    shutil.copy(case_files["t1"], tmp_path / "copy_t1.nii.gz")
    img, shape = open_nifti(tmp_path / "copy_t1.nii.gz")
    assert shape == nib.load(case_files["t1"]).shape[:3]
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(nib.load(case_files["t1"]).dataobj))
    assert load_case(case_files["t1"]).label is not None


# ---------------------------------------------------------------------------- bad checkpoints


def forged_checkpoint(tmp_path: Path, name: str, *, create=None, meta=None, nan: bool = False,
                      task: str = "segmentation") -> Path:
    """A real small checkpoint whose metadata (or weights) were edited afterwards."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from napari_acs.models import create_model, save_checkpoint
    from napari_acs.models.checkpoint import METADATA_KEY

    path = save_checkpoint(create_model("mobilenetv2_100", task=task, pretrained=False), tmp_path / f"{name}.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()[METADATA_KEY])
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    header["create_model"].update(create or {})
    header["meta"].update(meta or {})
    if nan:
        first = next(key for key, value in tensors.items() if value.is_floating_point())
        tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(header)})
    return path


@pytest.mark.parametrize("name, change, message", [
    ("three_channels", dict(create={"in_channels": 3}), "in_channels=3 is not allowed"),
    ("huge_head", dict(create={"num_classes": 10**9}), "num_classes=1000000000 is not allowed"),
    ("negative_head", dict(create={"num_classes": -3}), "num_classes=-3 is not allowed"),
    ("odd_patch", dict(meta={"patch_size": ["a", "b"]}), "patch_size ['a', 'b'] is not three voxel counts"),
    ("nan_weights", dict(nan=True), "hold NaN or infinite values"),
    ("classifier", dict(task="classification"), "a classification model cannot be used for segmentation"),
])
def test_segment_refuses_a_bad_checkpoint_in_one_line(case_files, tmp_path: Path, name, change, message) -> None:
    path = forged_checkpoint(tmp_path, name, **change)
    code, stderr = cli("segment", str(case_files["t1"].parent), "--checkpoint", str(path),
                       "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 1 and "Traceback" not in stderr, stderr
    assert str(path) in stderr and message in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_a_path_inside_a_checkpoint_is_never_opened(tmp_path: Path) -> None:
    import sys as _sys

    from napari_acs.models import load_model

    secret = tmp_path / "not_for_you.pth"
    secret.write_bytes(b"private")
    path = forged_checkpoint(tmp_path, "follows_paths", create={"pretrained": str(secret)})
    opened: list[str] = []

    def audit(event: str, args: tuple) -> None:
        if event == "open" and str(args[0]) == str(secret):
            opened.append(event)

    _sys.addaudithook(audit)
    model = load_model(path)
    assert not opened and model.create_kwargs["pretrained"] == str(secret)  # recorded, never followed


# ---------------------------------------------------------------------------- messages that misled


def cli(*args: str) -> tuple[int, str]:
    """``napari-acs ARGS`` in this process: (exit code, stderr); a traceback would raise here."""
    import contextlib
    import io

    from napari_acs.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from napari_acs.models import create_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "lite0.safetensors"
    return save_checkpoint(create_model("tf_efficientnet_lite0", pretrained=False), path, patch_size=[32, 32, 32])


def _spoil_reference(seg: Path, how: str) -> str:
    """Make a case's seg file unusable; returns what the warning must say."""
    img = nib.load(seg)
    labels = np.asarray(img.dataobj)
    if how == "label 5":
        labels = labels.copy()
        labels.flat[int(np.flatnonzero(labels)[0])] = 5
        nib.save(nib.Nifti1Image(labels, img.affine), seg)
        return "label values 5 unknown"
    if how == "another grid":
        nib.save(nib.Nifti1Image(labels[:-2], img.affine), seg)
        return "differs from"
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2])  # a truncated gzip stream
    return "corrupt or truncated gzip"


@pytest.mark.parametrize("how", ["label 5", "another grid", "truncated"])
def test_segment_warns_about_a_bad_reference_and_still_segments(case_files, tmp_path: Path, checkpoint: Path,
                                                                how: str) -> None:
    said = _spoil_reference(case_files["seg"], how)
    out = tmp_path / "out"
    code, stderr = cli("segment", str(case_files["t1"].parent), "--out", str(out), "--checkpoint", str(checkpoint),
                       "--device", "cpu", "--no-progress")
    assert code == 0, stderr
    warning = next(line for line in stderr.splitlines() if line.startswith("warning: "))
    assert str(case_files["seg"]) in warning and said in warning and "reference segmentation is not used" in warning
    import csv

    (row,) = list(csv.DictReader((out / "volumes.csv").open()))
    assert row["error"] == "" and said in row["warning"] and (out / row["segmentation"]).is_file()
    with pytest.raises(BratsInputError):  # where the reference is the point, it is still an error
        load_case(case_files["t1"])


def test_symlinked_case_folders_are_found(tmp_path: Path) -> None:
    from napari_acs.inference.batch import expand_inputs
    from napari_acs.io import find_cases
    from napari_acs.metrics.evaluate import evaluate_folders

    for letter in "AB":
        write_case(tmp_path / "store" / letter, case_id=f"case{letter}")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    for letter in "AB":
        (cohort / f"link{letter}").symlink_to(tmp_path / "store" / letter, target_is_directory=True)
    (cohort / "loop").symlink_to(cohort, target_is_directory=True)  # a link loop ends, it does not hang
    assert find_cases(cohort) == [cohort / "linkA", cohort / "linkB"]
    assert expand_inputs([cohort]) == [cohort / "linkA", cohort / "linkB"]
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "caseA_seg.nii.gz").symlink_to(tmp_path / "store" / "A" / "caseA_seg.nii.gz")
    rows = evaluate_folders(tmp_path / "pred", cohort)  # references found through the links
    assert {r["case_id"] for r in rows} == {"caseA"} and all(r["dice"] == 1.0 for r in rows)


def test_evaluate_affine_mismatch_shows_both_affines(case_files, tmp_path: Path) -> None:
    from napari_acs.metrics.evaluate import evaluate_folders

    seg = nib.load(case_files["seg"])
    moved = seg.affine.copy()
    moved[0, 3] += 2.0
    case_id = case_files["seg"].name.split("_seg")[0]
    pred = write_prediction(tmp_path / "pred", case_id, np.asarray(seg.dataobj), moved, np.uint8)
    with pytest.raises(BratsInputError) as info:
        evaluate_folders(tmp_path / "pred", case_files["seg"].parent)
    message = str(info.value)
    x_pred, x_ref = (f"{v:g}" for v in (moved[0, 3], seg.affine[0, 3]))
    assert info.value.path == pred and "by 2 mm" in message and "same shape" not in message
    assert f"origin ({x_pred}, " in message and f"in the prediction vs ({x_ref}, " in message, message


def test_segment_makes_no_out_folder_when_every_input_is_rejected(case_files, tmp_path: Path,
                                                                  checkpoint: Path) -> None:
    case_files["t2"].unlink()
    out = tmp_path / "out"
    code, stderr = cli("segment", str(case_files["t1"].parent), str(tmp_path / "nosuch"), "--out", str(out),
                       "--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress")
    (line,) = [line for line in stderr.splitlines() if "error" in line]
    assert code == 1 and "Traceback" not in stderr
    assert "missing modality t2" in line and "(and 1 more input rejected)" in line and "nothing written" in line
    assert not out.exists()


def _small_cohort(root: Path) -> Path:
    """Case A usable, B with NaN voxels (found when loading), C without its t2 (found at once)."""
    from nifti_cases import write_volume

    for i, letter in enumerate("ABC"):
        write_case(root / letter, case_id=f"case{letter}", seed=i)
    t1 = nib.load(root / "B" / "caseB_t1.nii.gz")
    data = np.asarray(t1.dataobj).astype(np.float32)
    data[3, 3, 3] = np.nan
    write_volume(root / "B" / "caseB_t1.nii.gz", data, t1.affine)
    (root / "C" / "caseC_t2.nii.gz").unlink()
    return root


def test_finetune_skips_bad_cases_and_refuses_only_when_too_few_remain(tmp_path: Path) -> None:
    from napari_acs.training import finetune
    from napari_acs.training.config import FinetuneConfig

    cohort = _small_cohort(tmp_path / "cohort")
    small = dict(model="tf_efficientnet_lite0", patch_size=32, batch_size=2, epochs=1, steps_per_epoch=1,
                 pretrained=False, device="cpu")
    result = finetune(FinetuneConfig(cohort, tmp_path / "run", val_fraction=0.0, **small))
    assert result.train_ids == ["caseA"] and result.epochs_completed == 1
    skipped = [w for w in result.warnings if w.startswith("case skipped: ")]
    assert len(skipped) == 2
    assert any(str(cohort / "C") in w and "missing modality t2" in w for w in skipped)
    assert any(str(cohort / "B" / "caseB_t1.nii.gz") in w and "NaN" in w for w in skipped)

    with pytest.raises(ValueError, match="left after skipping 1 that cannot be read; too few to train") as info:
        finetune(FinetuneConfig(cohort, tmp_path / "run2", val_fraction=0.5, **small))  # A + B: one is lost
    assert "caseB_t1.nii.gz" in str(info.value)


# ---------------------------------------------------------------------------- the widgets


def test_widgets_show_the_one_line_refusal_of_a_forged_file(make_napari_viewer, qtbot, case_files, tmp_path: Path,
                                                            screenshots_dir: Path) -> None:
    """Load: a t2 whose header claims 10^15 voxels; Segment: a checkpoint claiming 10^9 classes.
    Each widget shows the CLI's one-line message, naming the file; nothing is added."""
    viewer = make_napari_viewer()
    _, load = viewer.window.add_plugin_dock_widget("napari-acs", "Load BraTS case")
    case_files["t2"].write_bytes(gzip.compress(nifti_header_bytes((100_000, 100_000, 100_000))))
    load.open_case(str(case_files["t1"].parent))
    load.runner.wait(60)
    text = load.message.text()
    assert load.message.level == "error" and "\n" not in text.strip()
    assert str(case_files["t2"]) in text and "voxels, more than the" in text and len(viewer.layers) == 0
    viewer.window.show()
    viewer.window.resize(1200, 800)
    qtbot.waitExposed(viewer.window._qt_window)
    qtbot.wait(300)
    viewer.screenshot(str(screenshots_dir / "hostile_load_forged_header.png"), canvas_only=False)

    write_case(tmp_path / "good", case_id="good")
    viewer.open(str(tmp_path / "good"), plugin="napari-acs")
    _, seg = viewer.window.add_plugin_dock_widget("napari-acs", "Segment")
    seg.choice.backend.wait(120)
    forged = forged_checkpoint(tmp_path, "huge_head", create={"num_classes": 10**9})
    seg.choice.choose_checkpoint(forged)
    qtbot.waitUntil(lambda: seg.choice.warning.level == "error", timeout=30_000)
    assert str(forged) in seg.choice.warning.text() and "num_classes=1000000000 is not allowed" in seg.choice.warning.text()
    layers = len(viewer.layers)
    seg.run(device="cpu")
    assert seg.wait(60)
    text = seg.message.text()
    assert seg.message.level == "error" and "\n" not in text.strip() and str(forged) in text
    assert len(viewer.layers) == layers
    qtbot.wait(300)
    viewer.screenshot(str(screenshots_dir / "hostile_segment_forged_checkpoint.png"), canvas_only=False)
