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
    done = subprocess.run([sys.executable, "-m", "napari_acs.cli", "segment", str(case_files["t1"].parent),
                           "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(path) in done.stderr and message in done.stderr, done.stderr
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
