"""A poor model says so: recorded Dice and implausible volumes warn, in the Segment widget and the CLI.

The rules on made-up metadata and volumes; then a forged checkpoint (the demo model with a
recorded validation Dice of 0.007 and a head that paints the whole brain, saved with
napari_acs.models.checkpoint's own writer) through the real widget and ``napari-acs segment``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_acs.inference.plausibility import (
    MAX_WHOLE_TUMOUR_ML,
    brain_volume_ml,
    model_concerns,
    recorded_dice,
    volume_concerns,
    worst_level,
)
from napari_acs.io.sample import sample_case_path
from tests.test_cli import run
from tests.test_widgets import dock, open_case, shoot

POOR_DICE = {"val_dice_WT": 0.012, "val_dice_TC": 0.006, "val_dice_ET": 0.003, "val_dice_mean": 0.007}


# ---------------------------------------------------------------------------- rules


def test_recorded_dice_prefers_held_out_cases() -> None:
    meta = {"heldout_dice": {"WT": 0.9, "TC": 0.8, "ET": 0.4}, "metrics": {"val_dice_mean": 0.1}}
    assert recorded_dice(meta) == (pytest.approx(0.7), "held-out")
    assert recorded_dice({"metrics": POOR_DICE}) == (0.007, "validation")
    assert recorded_dice({"metrics": {"val_dice_WT": 0.6, "val_dice_TC": 0.4}}) == (pytest.approx(0.5), "validation")
    # a diverged run records None (NaN is not JSON); no validation at all: nothing recorded
    assert recorded_dice({"metrics": {"val_dice_mean": None, "val_loss": 0.3}}) is None
    assert recorded_dice({}) is None and recorded_dice(None) is None


def test_model_concerns_by_recorded_score() -> None:
    (poor,) = model_concerns({"metrics": POOR_DICE})
    assert poor.level == "error" and "0.007" in poor.text and "validation" in poor.text
    (weak,) = model_concerns({"heldout_dice": {"WT": 0.5, "TC": 0.3, "ET": 0.2}})
    assert weak.level == "warning" and "0.333" in weak.text and "held-out" in weak.text
    assert model_concerns({"heldout_dice": {"WT": 0.87, "TC": 0.79, "ET": 0.55}}) == []
    (unknown,) = model_concerns({"patch_size": [96, 96, 96]})
    assert unknown.level == "warning" and "No validation Dice" in unknown.text
    assert model_concerns(None) == []  # an untrained preset: warned about as untrained
    (chance,) = model_concerns({"metrics": {"val_auc": 0.52}}, task="classification")
    assert chance.level == "warning" and "0.520" in chance.text
    assert model_concerns({"metrics": {"val_auc": 0.81}}, task="classification") == []
    assert worst_level([weak, poor]) == "error" and worst_level([weak]) == "warning" and worst_level([]) is None


def test_the_shipped_demo_model_raises_no_concern() -> None:
    from napari_acs.models.checkpoint import load_checkpoint
    from napari_acs.models.select import demo_checkpoint_path

    if not demo_checkpoint_path().is_file():
        pytest.skip("no demo checkpoint in this checkout")
    assert model_concerns(load_checkpoint(demo_checkpoint_path())[1]["meta"]) == []


def test_volume_concerns() -> None:
    (brain,) = volume_concerns({"WT": 1789.0, "TC": 900.0, "ET": 10.0}, brain_ml=1650.0)
    assert brain.level == "error" and "1789 mL" in brain.text and "108%" in brain.text
    (large,) = volume_concerns({"WT": 620.0}, brain_ml=1500.0)  # 41% of the brain, but above 500 mL
    assert large.level == "error" and "620 mL" in large.text
    (half,) = volume_concerns({"WT": 400.0}, brain_ml=700.0)  # a small brain, more than half of it
    assert "57%" in half.text
    assert volume_concerns({"WT": 120.0, "TC": 60.0, "ET": 20.0}, brain_ml=1400.0) == []
    assert volume_concerns({"WT": MAX_WHOLE_TUMOUR_ML - 1}) == [] and volume_concerns({}) == []


def test_brain_volume_counts_voxels_of_any_sequence() -> None:
    image = np.zeros((4, 10, 10, 10), dtype=np.float32)
    image[0, :5] = 1.0  # 500 voxels
    image[3, 5:7] = 2.0  # 200 more, seen in one sequence only
    assert brain_volume_ml(image, (1.0, 1.0, 2.0)) == pytest.approx(700 * 2.0 / 1000.0)


# ---------------------------------------------------------------------------- widget and CLI


@pytest.fixture(scope="module")
def forged_checkpoint(tmp_path_factory) -> Path:
    """The demo model with a recorded validation Dice of 0.007, no held-out Dice, and a head whose
    output is +50 logits everywhere (it paints every brain voxel as tumour), saved as a user's
    fine-tuning run would have saved it."""
    import torch

    from napari_acs.models.checkpoint import load_model, save_checkpoint
    from napari_acs.models.select import demo_checkpoint_path

    if not demo_checkpoint_path().is_file():
        pytest.skip("no demo checkpoint in this checkout")
    model = load_model(demo_checkpoint_path())
    with torch.no_grad():
        for name, parameter in model.head.named_parameters():
            parameter.fill_(50.0 if name.endswith("bias") else 0.0)
    meta = {key: value for key, value in model.checkpoint_meta.items() if key not in ("heldout_dice", "heldout_cases")}
    meta["metrics"] = {**POOR_DICE, "val_seconds": 3.0}
    meta["model_card"] = "Forged for a test: a fine-tuning run that failed (validation Dice 0.007)."
    return save_checkpoint(model, tmp_path_factory.mktemp("poor") / "poor.safetensors", **meta)


def test_segment_widget_warns_of_a_poor_model_and_an_implausible_result(
    make_napari_viewer, qtbot, forged_checkpoint: Path, screenshots_dir: Path
) -> None:
    viewer = make_napari_viewer(show=True)
    *_, reference = open_case(viewer, sample_case_path())
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(120)
    # the demo model: no warning under its card
    qtbot.waitUntil(lambda: "Held-out Dice" in widget.choice.card.toPlainText(), timeout=30_000)
    assert widget.choice.warning.isHidden()

    widget.choice.choose_checkpoint(forged_checkpoint)
    qtbot.waitUntil(lambda: widget.choice.warning.level == "error", timeout=30_000)
    assert not widget.choice.warning.isHidden()
    assert "Poor model" in widget.choice.warning.text() and "0.007" in widget.choice.warning.text()

    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(180)
    text = widget.message.text()
    assert widget.message.level == "error", text  # red, never the green success line
    assert not widget.message.isHidden()
    assert "Poor model" in text and "0.007" in text
    assert "Implausible result" in text and f"{widget.result.volumes_ml['WT']:.0f} mL" in text
    assert [c.level for c in widget.result.concerns] == ["error", "error"]
    shoot(viewer, qtbot, screenshots_dir / "segment_poor_model.png")


def test_cli_segment_warns_of_a_poor_model_and_an_implausible_result(tmp_path: Path, forged_checkpoint: Path) -> None:
    out = tmp_path / "preds"
    result = run("segment", str(sample_case_path()), "--out", str(out), "--checkpoint", str(forged_checkpoint),
                 "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr  # written: a warning, not a failure
    lines = result.stderr.splitlines()
    poor = [line for line in lines if "Poor model" in line]
    assert len(poor) == 1 and poor[0].startswith("model warning: ") and "0.007" in poor[0]
    implausible = [line for line in lines if "Implausible result" in line]
    assert len(implausible) == 1 and implausible[0].startswith("warning: BraTS2021_00000: ")
    assert any(out.glob("*seg.nii.gz"))
    assert "Implausible result" in (out / "volumes.csv").read_text()  # in the case's row too

    demo = run("segment", str(sample_case_path()), "--out", str(tmp_path / "demo"), "--device", "cpu", "--no-progress")
    assert demo.returncode == 0, demo.stderr
    assert not [line for line in demo.stderr.splitlines() if "warning: " in line], demo.stderr
