"""Two models side by side (issue 18, point 2): the agreement module on hand-made label maps
with known answers, and the Compare models widget in a real napari viewer under Xvfb on the
shipped sample case (demo model against itself, and against a perturbed twin saved in tmp_path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_acs.io.labels import REGIONS
from napari_acs.metrics.agreement import (
    A_ONLY,
    AGREEMENT_COLOURS,
    B_ONLY,
    BOTH,
    compare_labels,
    disagreement,
    summarise,
)
from tests.test_widgets import MAX_STALL_S, Heartbeat  # hidden window: see MAX_STALL_S there

# ---------------------------------------------------------------------------- hand-made maps

#: brats2021 values: NCR 1, ED 2, ET 4.
NCR, ED, ET = 1, 2, 4


def two_label_maps() -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 3 x 2 grid; each voxel tells one story (commented) of A against B."""
    a = np.zeros((4, 3, 2), np.uint8)
    b = np.zeros((4, 3, 2), np.uint8)
    a[0, 0, 0], b[0, 0, 0] = ET, ET  # both ET (so both TC and WT)
    a[0, 0, 1], b[0, 0, 1] = ET, NCR  # both TC and WT; ET only in A
    a[1, 0, 0], b[1, 0, 0] = ED, NCR  # both WT; TC only in B
    a[1, 0, 1], b[1, 0, 1] = ED, 0  # WT only in A
    a[2, 0, 0], b[2, 0, 0] = 0, ED  # WT only in B
    a[2, 0, 1], b[2, 0, 1] = NCR, NCR  # both NCR: TC and WT in both
    a[3, 2, 1], b[3, 2, 1] = 0, ET  # ET, TC, WT only in B
    return a, b


def test_disagreement_maps_each_voxel_to_a_only_b_only_or_both() -> None:
    a, b = two_label_maps()
    wt, tc, et = (disagreement(a, b, region) for region in REGIONS)
    assert wt.dtype == np.uint8 and wt.shape == a.shape
    expected_wt = {(0, 0, 0): BOTH, (0, 0, 1): BOTH, (1, 0, 0): BOTH, (1, 0, 1): A_ONLY, (2, 0, 0): B_ONLY,
                   (2, 0, 1): BOTH, (3, 2, 1): B_ONLY}
    expected_tc = {(0, 0, 0): BOTH, (0, 0, 1): BOTH, (1, 0, 0): B_ONLY, (2, 0, 1): BOTH, (3, 2, 1): B_ONLY}
    expected_et = {(0, 0, 0): BOTH, (0, 0, 1): A_ONLY, (3, 2, 1): B_ONLY}
    for dmap, expected in ((wt, expected_wt), (tc, expected_tc), (et, expected_et)):
        want = np.zeros(a.shape, np.uint8)
        for index, value in expected.items():
            want[index] = value
        assert np.array_equal(dmap, want)
    assert (A_ONLY, B_ONLY, BOTH) == (1, 2, 3)


def test_compare_labels_gives_volumes_in_ml_and_inter_model_dice() -> None:
    a, b = two_label_maps()
    spacing = (1.0, 2.0, 2.5)  # 5 mm^3 = 0.005 mL per voxel
    out = compare_labels(a, b, spacing)
    wt, tc, et = out["WT"], out["TC"], out["ET"]
    # WT: A 5 voxels, B 6, both 4; TC: A 3, B 5, both 3; ET: A 2, B 2, both 1
    assert wt.volume_ml_a == pytest.approx(0.025) and wt.volume_ml_b == pytest.approx(0.030)
    assert (wt.a_only_ml, wt.b_only_ml, wt.both_ml) == pytest.approx((0.005, 0.010, 0.020))
    assert wt.dice == pytest.approx(2 * 4 / (5 + 6))
    assert (tc.volume_ml_a, tc.volume_ml_b, tc.a_only_ml, tc.b_only_ml) == pytest.approx((0.015, 0.025, 0.0, 0.010))
    assert tc.dice == pytest.approx(2 * 3 / (3 + 5))
    assert et.dice == pytest.approx(0.5) and et.volume_ml_a == pytest.approx(0.010)

    swapped = compare_labels(b, a, spacing)  # symmetric: A only and B only trade places
    for region in REGIONS:
        assert swapped[region].dice == pytest.approx(out[region].dice)
        assert swapped[region].a_only_ml == pytest.approx(out[region].b_only_ml)
        assert swapped[region].volume_ml_b == pytest.approx(out[region].volume_ml_a)


def test_identical_empty_and_one_sided_maps() -> None:
    a, _ = two_label_maps()
    same = compare_labels(a, a.copy())
    assert all(same[r].dice == 1.0 and same[r].a_only_ml == 0 and same[r].b_only_ml == 0 for r in REGIONS)
    assert set(np.unique(disagreement(a, a, "WT"))) == {0, BOTH}
    empty = np.zeros_like(a)
    nothing = compare_labels(empty, empty)
    assert all(nothing[r].dice == 1.0 and nothing[r].volume_ml_a == 0 for r in REGIONS)  # BraTS: both empty -> 1
    one_sided = compare_labels(a, empty)
    assert all(one_sided[r].dice == 0.0 for r in REGIONS)
    assert one_sided["WT"].a_only_ml == pytest.approx(one_sided["WT"].volume_ml_a) == pytest.approx(0.005)


def test_label_conventions_of_a_and_b_may_differ() -> None:
    a, _ = two_label_maps()
    b2023 = np.where(a == ET, 3, a).astype(np.uint8)  # BraTS 2023: ET = 3
    out = compare_labels(a, b2023, convention="brats2021", convention_b="brats2023")
    assert all(out[r].dice == 1.0 for r in REGIONS)
    assert compare_labels(a, b2023)["ET"].dice == 0.0  # read as 2021 labels, B has no ET


def test_bad_input_is_named() -> None:
    a, b = two_label_maps()
    with pytest.raises(ValueError, match=r"model A's labels have shape \(4, 3, 2\), model B's \(4, 3, 3\)"):
        disagreement(a, np.zeros((4, 3, 3), np.uint8), "WT")
    with pytest.raises(ValueError, match="unknown region 'NCR'; expected one of WT, TC, ET"):
        disagreement(a, b, "NCR")
    with pytest.raises(ValueError, match="not a disagreement map: values up to 4"):
        summarise(a)


# ---------------------------------------------------------------------------- the widget


def dock(viewer, name: str):
    return viewer.window.add_plugin_dock_widget("napari-acs", name)[1]


@pytest.fixture(scope="module")
def twin_checkpoint(tmp_path_factory) -> Path:
    """The demo model with noise added to its output layer (a second, different model)."""
    import torch

    from napari_acs.models.checkpoint import load_model, save_checkpoint
    from napari_acs.models.select import demo_checkpoint_path

    assert demo_checkpoint_path().is_file(), "the shipped demo checkpoint is missing"
    model = load_model(demo_checkpoint_path())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = model.head.weight
        weight += NOISE * weight.std() * torch.randn(weight.shape, generator=generator)
    meta = {**model.checkpoint_meta, "model_card": "Test twin: the demo model with noise in its output layer."}
    return save_checkpoint(model, tmp_path_factory.mktemp("twin") / "twin.safetensors", **meta)


#: Noise added to the twin's output weights, in standard deviations of those weights.
NOISE = 2.0


def canvas_colour_counts(viewer) -> dict[int, int]:
    """Pixels of the canvas whose colour is dominated by each agreement colour (A only orange,
    B only sky blue, both bluish green), however the overlay blends with the grey scan."""
    rgb = viewer.screenshot(canvas_only=True)[..., :3].astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {
        A_ONLY: int(((r - b > 120) & (r > g) & (g - b > 40)).sum()),
        B_ONLY: int(((b - r > 60) & (b > g) & (g > r)).sum()),
        BOTH: int(((g - r > 60) & (g > b)).sum()),
    }


@pytest.mark.slow
def test_compare_widget_shows_where_two_models_agree(
    make_napari_viewer, qtbot, twin_checkpoint: Path, screenshots_dir: Path
) -> None:
    from napari_acs._napari._layers import from_display
    from napari_acs._napari._widget_compare import COLUMNS, SAME_MODEL, comparison_name
    from napari_acs.io.sample import sample_case_path

    viewer = make_napari_viewer()
    widget = dock(viewer, "Compare models")
    widget.run()
    assert widget.message.level == "warning" and "Open a BraTS case" in widget.message.text()
    layers = viewer.open(str(sample_case_path()), plugin="napari-acs")
    reference, case = layers[-1], layers[-1].metadata["napari_acs"]["case"]
    widget.choice_a.backend.wait(300)
    widget.choice_b.backend.wait(300)
    assert widget.choice_a.spec().kind == widget.choice_b.spec().kind == "demo"
    widget.panel.select_device("cpu")

    # 1. model A against itself: Dice 1 everywhere, every labelled voxel "both"
    qtbot.waitUntil(widget.run_button.isEnabled, timeout=10_000)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(300), "the comparison did not finish"
    assert widget.message.level == "warning" and SAME_MODEL in widget.message.text(), widget.message.text()
    first = widget.result
    layer = viewer.layers[comparison_name(case, "WT")]
    assert set(np.unique(np.asarray(layer.data))) == {0, BOTH}
    assert "napari_acs" not in layer.metadata  # not a segmentation: no widget takes it for a reference
    assert np.allclose(layer.scale, reference.scale) and np.allclose(layer.translate, reference.translate)
    for value, colour in AGREEMENT_COLOURS.items():
        assert tuple(layer.colormap.map(value)) == pytest.approx(colour)
    for region in REGIONS:
        assert widget.table.value(region, "Dice A-B") == "1.000"
        assert widget.table.value(region, "A only mL") == widget.table.value(region, "B only mL") == "0.0"
        assert widget.table.value(region, "A mL") == widget.table.value(region, "B mL") != "–"

    # 2. model A against a different model B: what only one of them labels, and their Dice
    widget.choice_b.choose_checkpoint(twin_checkpoint)
    beat = Heartbeat()  # the GUI thread keeps running while model B is built and both segment
    beat.start()
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.wait(300), "the comparison did not finish"
    beat.stop()
    print(f"\nheartbeat: longest GUI stall while comparing {beat.max_gap() * 1000:.0f} ms")
    assert beat.max_gap() < MAX_STALL_S
    assert widget.message.level == "success", widget.message.text()
    result = widget.result
    assert np.array_equal(result.labels_a, first.labels_a)  # model A unchanged
    assert [layer.name for layer in viewer.layers].count(comparison_name(case, "WT")) == 1  # the same layer
    a_wt, b_wt = result.labels_a > 0, result.labels_b > 0  # independent of the module: WT = any label
    shown = from_display(np.asarray(layer.data))
    assert np.array_equal(shown == A_ONLY, a_wt & ~b_wt)
    assert np.array_equal(shown == B_ONLY, b_wt & ~a_wt)
    assert np.array_equal(shown == BOTH, a_wt & b_wt)
    assert (shown == A_ONLY).any() and (shown == B_ONLY).any() and (shown == BOTH).any()
    voxel_ml = float(np.prod(case.spacing)) / 1000
    dice = 2 * (a_wt & b_wt).sum() / (a_wt.sum() + b_wt.sum())
    print(f"WT: A {a_wt.sum() * voxel_ml:.1f} mL, B {b_wt.sum() * voxel_ml:.1f} mL, Dice {dice:.3f}; "
          + ", ".join(f"{r} Dice {result.agreement[r].dice:.3f}" for r in REGIONS)
          + f"; {result.seconds:.1f} s")
    assert 0.2 < dice < 0.99
    assert widget.table.value("WT", "Dice A-B") == f"{dice:.3f}"
    assert widget.table.value("WT", "A mL") == f"{a_wt.sum() * voxel_ml:.1f}"
    assert widget.table.value("WT", "B only mL") == f"{(b_wt & ~a_wt).sum() * voxel_ml:.1f}"
    et_a, et_b = result.labels_a == 4, result.labels_b == 4
    assert widget.table.value("ET", "B mL") == f"{et_b.sum() * voxel_ml:.1f}"
    assert len(COLUMNS) == widget.table.columnCount()

    # 3. the region selector: the layer shows ET, the table's ET row is selected
    widget.select_region("ET")
    assert layer.name == comparison_name(case, "ET")
    shown = from_display(np.asarray(layer.data))
    assert np.array_equal(shown == A_ONLY, et_a & ~et_b) and np.array_equal(shown == BOTH, et_a & et_b)
    assert [index.row() for index in widget.table.selectionModel().selectedRows()] == [REGIONS.index("ET")]

    # the screenshot a reader sees: WT disagreement over FLAIR at the tumour's largest slice
    widget.select_region("WT")
    reference.visible = False
    viewer.layers.selection.active = layer
    z = int(np.argmax((np.asarray(layer.data) > 0).sum(axis=(1, 2))))
    viewer.dims.set_point(0, z * layer.scale[0])
    viewer.window.show()
    viewer.window.resize(1500, 1000)
    qtbot.waitExposed(viewer.window._qt_window)
    viewer.reset_view()
    qtbot.wait(300)
    viewer.screenshot(str(screenshots_dir / "compare.png"), canvas_only=False)
    counts = canvas_colour_counts(viewer)
    print(f"canvas pixels: A only {counts[A_ONLY]}, B only {counts[B_ONLY]}, both {counts[BOTH]}")
    assert min(counts.values()) > 30, counts  # all three colours drawn, and told apart

    # 4. Cancel while model B runs (with TTA): nothing changes
    before = np.asarray(layer.data).copy()
    widget.tta_b.setChecked(True)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "model B" in widget.panel.progress.format() and widget.panel.progress.value() > 500,
                    timeout=120_000)
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    assert widget.wait(120)
    assert widget.message.level == "warning" and "Cancelled" in widget.message.text()
    assert widget.result is result and np.array_equal(np.asarray(layer.data), before)


def test_compare_widget_names_a_bad_checkpoint_before_segmenting(make_napari_viewer, tmp_path: Path) -> None:
    from napari_acs.io.sample import sample_case_path

    viewer = make_napari_viewer(show=False)
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    widget = dock(viewer, "Compare models")
    widget.choice_b.backend.wait(300)
    widget.choice_b.model.setCurrentIndex(widget.choice_b.model.findData("checkpoint"))
    widget.run(device="cpu")
    assert widget.message.level == "warning" and "Model B: choose a checkpoint file" in widget.message.text()
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    widget.choice_b.choose_checkpoint(bad)
    fractions: list[float] = []
    widget.runner.progressed.connect(lambda fraction, message: fractions.append(fraction))
    widget.run(device="cpu")
    assert widget.wait(120)
    assert widget.message.level == "error" and "broken.safetensors" in widget.message.text()
    assert widget.result is None and not any("A vs B" in layer.name for layer in viewer.layers)
    assert max(fractions, default=0.0) == 0.0  # model B failed while the engines were built: A never ran
