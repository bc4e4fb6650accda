"""`napari-acs segment --uncertainty / --save-probabilities`: maps on the source grid and the score column."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs.cli import main
from napari_acs.inference.uncertainty import binary_entropy
from nifti_cases import AFFINES, write_case

HEADER = ["case_id", "segmentation", "WT_ml", "TC_ml", "ET_ml", "seconds", "error", "warning"]


def run(*args: str) -> tuple[int, str, str]:
    """``napari-acs segment ARGS --device cpu --no-progress`` in this process: (code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["segment", *args, "--device", "cpu", "--no-progress"])
    return code, out.getvalue(), err.getvalue()


def table(out: Path) -> list[dict[str, str]]:
    with open(out / "volumes.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture()
def cohort(tmp_path: Path) -> Path:
    """Two small cases on different grids: BraTS 2021 stored LPS, BraTS 2023 oblique."""
    folder = tmp_path / "cohort"
    write_case(folder / "a", case_id="caseA", affine=AFFINES["LPS"])
    write_case(folder / "b", case_id="caseB", affine=AFFINES["oblique"], convention="brats2023", seed=1)
    return folder


def test_maps_lie_on_the_source_grid_and_agree_with_the_labels(tmp_path: Path, cohort: Path, one_torch_thread) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(str(cohort), "--out", str(out), "--uncertainty", "--save-probabilities")
    assert code == 0, stderr
    for case_id, seg_name, flair in (("caseA", "caseA_seg.nii.gz", "a/caseA_flair.nii.gz"),
                                     ("caseB", "caseB-seg.nii.gz", "b/caseB-t2f.nii.gz")):
        source = nib.load(cohort / flair)
        labels = np.asarray(nib.load(out / seg_name).dataobj)
        uncertainty = nib.load(out / f"{case_id}_uncertainty.nii.gz")
        probabilities = nib.load(out / f"{case_id}_probabilities.nii.gz")
        assert uncertainty.shape == source.shape and probabilities.shape == (*source.shape, 3)
        for image in (uncertainty, probabilities):
            np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
            assert image.get_data_dtype() == np.float32
            data = np.asarray(image.dataobj)
            assert np.isfinite(data).all() and data.min() >= 0.0 and data.max() <= 1.0
        p = np.asarray(probabilities.dataobj)
        # a voxel is labelled exactly where a region's probability reached the threshold (0.5)
        np.testing.assert_array_equal(labels > 0, (p >= 0.5).any(axis=-1))
        u = np.asarray(uncertainty.dataobj)
        # without TTA: the largest region entropy of the probabilities
        np.testing.assert_allclose(u, binary_entropy(p).max(axis=-1), atol=1e-4)
    rows = table(out)
    assert [r["case_id"] for r in rows] == ["caseA", "caseB"]  # input order, not sorted by score
    assert list(rows[0]) == [*HEADER[:5], "score", *HEADER[5:]]
    scores = [float(r["score"]) for r in rows]
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    assert " score " in stdout.splitlines()[0] + " "


def test_tta_uncertainty_counts_the_flips_and_the_api_returns_scores(tmp_path: Path, cohort: Path,
                                                                      one_torch_thread) -> None:
    from napari_acs.inference.batch import segment_cases
    from napari_acs.models.checkpoint import load_model
    from napari_acs.models.select import demo_checkpoint_path

    out = tmp_path / "out"
    results = segment_cases([cohort / "a"], out, load_model(demo_checkpoint_path()), device="cpu", tta=True,
                            uncertainty=True)
    (result,) = results
    assert result.error is None and result.score is not None and 0.0 <= result.score <= 1.0
    assert set(result.maps) == {"uncertainty"} and not (out / "caseA_probabilities.nii.gz").exists()
    u = np.asarray(nib.load(result.maps["uncertainty"]).dataobj)
    # with TTA the map is the entropy of a vote fraction k / 8: only those nine values occur
    allowed = binary_entropy(np.arange(9) / 8)
    assert np.abs(u.ravel()[:, None] - allowed[None]).min(axis=1).max() < 1e-4
    assert float(table(out)[0]["score"]) == pytest.approx(result.score, abs=1e-4)


def test_without_the_flags_nothing_more_is_written(tmp_path: Path, cohort: Path, one_torch_thread) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(str(cohort / "a"), "--out", str(out), "--save-probabilities")
    assert code == 0, stderr
    assert (out / "caseA_probabilities.nii.gz").is_file() and not (out / "caseA_uncertainty.nii.gz").exists()
    assert list(table(out)[0]) == HEADER  # probabilities alone add no score
    plain = tmp_path / "plain"
    code, stdout, stderr = run(str(cohort / "a"), "--out", str(plain))
    assert code == 0, stderr
    assert sorted(p.name for p in plain.glob("*.nii.gz")) == ["caseA_seg.nii.gz"]
    assert list(table(plain)[0]) == HEADER and "score" not in stdout


def test_an_existing_map_is_refused_without_overwrite(tmp_path: Path, cohort: Path, one_torch_thread) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "caseA_uncertainty.nii.gz"
    stale.write_bytes(b"an earlier map")
    code, _, stderr = run(str(cohort / "a"), "--out", str(out), "--uncertainty")
    assert code == 1 and f"{stale} exists" in stderr and "--overwrite" in stderr
    assert stale.read_bytes() == b"an earlier map" and not (out / "caseA_seg.nii.gz").exists()
    assert table(out)[0]["score"] == ""  # the failed case has no score
    code, _, stderr = run(str(cohort / "a"), "--out", str(out), "--uncertainty", "--overwrite")
    assert code == 0, stderr
    assert nib.load(stale).shape == nib.load(out / "caseA_seg.nii.gz").shape
    score = table(out)[0]["score"]
    # --skip-existing keeps a case whose asked files all exist, with its earlier score
    code, stdout, stderr = run(str(cohort / "a"), "--out", str(out), "--uncertainty", "--skip-existing")
    assert code == 0 and "kept (exists)" in stdout, stderr
    assert table(out)[0]["score"] == score
    # ... and refuses one with only some of them (--overwrite redoes it)
    code, _, stderr = run(str(cohort / "a"), "--out", str(out), "--uncertainty", "--save-probabilities",
                          "--skip-existing")
    assert code == 1 and "caseA_probabilities.nii.gz does not" in stderr and "--overwrite" in stderr
