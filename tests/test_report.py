"""The one-page case report (PNG, PDF), ``napari-acs report`` and the Segment widget's report.

Real files: the shipped sample case (240 x 240 x 155), its reference segmentation or the demo
model's prediction, NIfTI files written in tmp_path, a real napari viewer under Xvfb.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from matplotlib.table import Table
from matplotlib.text import Text
from PIL import Image

from napari_acs.cli import main
from napari_acs.io import load_case, save_segmentation
from napari_acs.io.errors import BratsInputError
from napari_acs.io.labels import SUB_REGION_COLOURS, convert_labels
from napari_acs.io.sample import sample_case_path
from napari_acs.io.segmentation import read_segmentation
from napari_acs.metrics import brats_metrics, volumes_ml
from napari_acs.models.select import demo_checkpoint_path
from napari_acs.report.card import ModelCard, model_card_from_checkpoint
from napari_acs.report.case_report import (
    NO_TUMOUR,
    PAGE_IN,
    PNG_DPI,
    RESEARCH_ONLY,
    build_report,
    tumour_centre,
    write_report,
)
from napari_acs.report.figures import ReportError

PANELS = ("axial", "coronal", "sagittal")


@pytest.fixture(scope="module")
def case():
    return load_case(sample_case_path())


@pytest.fixture(scope="module")
def demo_card() -> ModelCard:
    return model_card_from_checkpoint(demo_checkpoint_path())


@pytest.fixture(scope="module")
def demo_prediction(case) -> np.ndarray:
    """The demo model's segmentation of the sample case (CPU, whole case)."""
    from napari_acs.inference import Segmenter

    return Segmenter.from_checkpoint(demo_checkpoint_path(), device="cpu").segment(case)


def texts(figure) -> str:
    """Every text of a figure (titles, labels, legend, table cells), one per line."""
    found = [*figure.findobj(Text)]
    found += [cell.get_text() for table in figure.findobj(Table) for cell in table.get_celld().values()]
    return "\n".join(t.get_text().replace("\n", " ") for t in found if t.get_text())


def panel_pixels(figure, png: np.ndarray) -> dict[str, np.ndarray]:
    """The pixels of each image panel in a PNG of ``figure`` (RGB floats 0-1), by view."""
    figure.canvas.draw()
    height = png.shape[0]
    out = {}
    for ax in figure.axes:
        if ax.get_label() in PANELS:
            box = ax.get_window_extent()  # display pixels, origin bottom left
            rows = slice(int(height - box.y1) + 2, int(height - box.y0) - 2)
            out[ax.get_label()] = png[rows, int(box.x0) + 2: int(box.x1) - 2, :3]
    return out


def colour_masks(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels showing each sub-region's colour over grey (the overlay is blended at 60 %)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return {"NCR": (r - np.maximum(g, b) > 0.3), "ED": (g - np.maximum(r, b) > 0.25),
            "ET": (np.minimum(r, g) - b > 0.3)}


def pdf_lines(data: bytes) -> list[str]:
    """The text lines a PDF from matplotlib draws: each ``[(..) kern (..)] TJ`` array's strings joined."""
    streams = b"".join(zlib.decompress(m) for m in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S)
                       if m[:1] == b"x")
    arrays = re.findall(rb"\[(.*?)\]\s*TJ", streams, re.S)
    parts = (re.findall(rb"\(((?:[^()\\]|\\.)*)\)", array) for array in arrays)
    return [re.sub(rb"\\(.)", rb"\1", b"".join(p)).decode("latin-1") for p in parts]


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


# ---------------------------------------------------------------------------- the report


def test_png_report_of_the_reference_shows_tumour_metrics_and_model_card(case, demo_card, tmp_path) -> None:
    out = write_report(case, case.label, tmp_path / "report.png", reference=case.label, model_card=demo_card,
                       uncertainty=0.125)
    png = read_png(out)
    height, width = png.shape[:2]
    assert (width, height) == pytest.approx((PAGE_IN[0] * PNG_DPI, PAGE_IN[1] * PNG_DPI), abs=1)  # one A4 page
    figure = build_report(case, case.label, reference=case.label, model_card=demo_card, uncertainty=0.125)
    panels = panel_pixels(figure, png)
    assert set(panels) == set(PANELS)
    for view, pixels in panels.items():
        grey = pixels.mean(axis=-1)
        assert (grey > 0.15).mean() > 0.3 and grey.std() > 0.1, f"{view} panel is blank"
        shown = colour_masks(pixels)
        for sub in ("NCR", "ED", "ET"):  # the slices go through the tumour centre: every sub-region shows
            assert shown[sub].sum() > 30, f"{sub} colour missing in the {view} panel"
    legend = png.reshape(-1, 3)
    for sub, rgba in SUB_REGION_COLOURS.items():  # the legend's swatches, in the layers' exact colours
        assert (np.abs(legend - np.asarray(rgba[:3], dtype=np.float32)).max(axis=1) < 1 / 255).sum() > 100, sub

    words = texts(figure)
    volumes = volumes_ml(case.label, case.spacing, case.convention)
    metrics = brats_metrics(case.label, case.label, case.spacing, case.convention)
    assert case.case_id in words and RESEARCH_ONLY in words
    for region in ("WT", "TC", "ET"):
        assert f"{volumes[region]:.1f}" in words
        assert metrics[region]["dice"] == 1.0 and metrics[region]["lesion_dice"] == 1.0
    assert words.count("1.000") >= 6  # legacy and lesion-wise Dice of a perfect segmentation
    for expected in ("Axial", "Coronal", "Sagittal", "necrotic core (NCR)", "peritumoral oedema (ED)",
                     "enhancing tumour (ET)", "Lesion Dice", "HD95", "tf_efficientnet_lite0 · ACS · segmentation",
                     "Recorded Dice", f"WT {demo_card.dice['WT']:.3f}", "(held-out, 6 cases)", "synthetic BraTS-like cases", "0.125", "FLAIR"):
        assert expected in words, expected


def test_slices_are_radiological_and_through_the_tumour(case, tmp_path) -> None:
    """A blob in the patient's right, anterior, superior brain appears on the screen's left (axial,
    coronal), at the top (axial: anterior; coronal, sagittal: superior) and left in the sagittal view
    (anterior), as in the viewer."""
    mask = case.image.max(axis=0) > 0
    xs, ys, zs = np.nonzero(mask)
    labels = np.zeros(case.shape, dtype=np.uint8)
    cx, cy, cz = (int(np.percentile(v, 80)) for v in (xs, ys, zs))  # right, anterior, superior in RAS+
    labels[cx - 4: cx + 4, cy - 4: cy + 4, cz - 4: cz + 4] = 2  # oedema (green)
    labels[~mask] = 0
    assert tumour_centre(labels) is not None
    figure = build_report(case, labels)
    path = tmp_path / "blob.png"
    figure.savefig(path, dpi=figure.dpi)
    for view, pixels in panel_pixels(figure, read_png(path)).items():
        rows, cols = np.nonzero(colour_masks(pixels)["ED"])
        assert rows.size > 20, view
        assert cols.mean() < pixels.shape[1] / 2, f"{view}: the blob is not on the screen's left"
        assert rows.mean() < pixels.shape[0] / 2, f"{view}: the blob is not in the upper half"


def test_pdf_report_is_one_a4_page(case, demo_prediction, demo_card, tmp_path) -> None:
    out = write_report(case, demo_prediction, tmp_path / "report.pdf", reference=case.label, model_card=demo_card)
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]+)\]", data).group(1).split()]
    assert box[2:] == pytest.approx([PAGE_IN[0] * 72, PAGE_IN[1] * 72], abs=0.5)
    assert f"napari-acs case report {case.case_id}".encode() in data  # the PDF's title
    drawn = pdf_lines(data)  # the words are drawn on the page, not only in its info
    assert RESEARCH_ONLY in drawn and f"Case report: {case.case_id}" in drawn and "Axial (z = " in "\n".join(drawn)
    metrics = brats_metrics(demo_prediction, case.label, case.spacing, case.convention)
    assert f"{metrics['WT']['dice']:.3f}" in drawn and f"{metrics['ET']['lesion_dice']:.3f}" in drawn


def test_demo_prediction_report_has_its_metrics(case, demo_prediction, demo_card, tmp_path, screenshots_dir) -> None:
    figure = build_report(case, demo_prediction, reference=case.label, model_card=demo_card)
    words = texts(figure)
    metrics = brats_metrics(demo_prediction, case.label, case.spacing, case.convention)
    for region in ("WT", "TC", "ET"):
        m = metrics[region]
        assert f"{m['dice']:.3f}" in words and f"{m['hd95']:.1f}" in words and f"{m['lesion_dice']:.3f}" in words
        counts = " / ".join(str(int(m[k])) for k in ("lesion_tp", "lesion_fp", "lesion_fn"))
        assert counts in words
    out = write_report(case, demo_prediction, tmp_path / "demo.png", reference=case.label, model_card=demo_card,
                       sequence="T1ce")
    shutil.copy(out, screenshots_dir / "report_demo_prediction.png")
    assert "T1ce" in texts(build_report(case, demo_prediction, sequence="T1c"))


def test_no_tumour_report_says_so_and_shows_the_brain(case, tmp_path) -> None:
    empty = np.zeros(case.shape, dtype=np.uint8)
    figure = build_report(case, empty, model_card=ModelCard.untrained("resnet18", "3d"))
    words = texts(figure)
    assert NO_TUMOUR in words and "brain's centre" in words and "No reference" in words
    assert "UNTRAINED" in words and "3D" in words
    out = write_report(case, empty, tmp_path / "empty.png")
    panels = panel_pixels(figure, read_png(out))
    for view, pixels in panels.items():
        assert (pixels.mean(axis=-1) > 0.15).mean() > 0.3, f"{view} shows no brain"
        assert not any(mask.sum() > 5 for mask in colour_masks(pixels).values()), view


def test_report_refuses_bad_destinations_before_drawing(case, tmp_path) -> None:
    with pytest.raises(ReportError, match=r"report\.jpg.*unknown format '\.jpg'"):
        write_report(case, case.label, tmp_path / "report.jpg")
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(ReportError, match="old.png: exists and was not replaced"):
        write_report(case, case.label, existing)
    assert existing.read_bytes() == b"keep me"
    write_report(case, case.label, existing, overwrite=True)
    assert existing.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ReportError, match="does not exist"):
        write_report(case, case.label, tmp_path / "missing" / "r.pdf")
    with pytest.raises(ReportError, match=r"shape \(10, 10, 10\) differs"):
        write_report(case, np.zeros((10, 10, 10), np.uint8), tmp_path / "r.png")
    with pytest.raises(ReportError, match="unknown sequence"):
        write_report(case, case.label, tmp_path / "r.png", sequence="DWI")
    assert not list(tmp_path.glob("r.*")) and not list(tmp_path.glob(".*tmp*"))


def test_model_card_from_a_finetuned_checkpoint_header() -> None:
    header = {"create_model": {"name": "resnet18", "conv": "3d", "task": "segmentation"},
              "meta": {"metrics": {"val_dice_WT": 0.5, "val_dice_TC": 0.25, "val_seconds": 3.0},
                       "training": {"train_ids": ["a", "b", "c"], "epochs_completed": 2,
                                    "config": {"cohort": "runs/cohort", "pretrained": None}}}}
    card = ModelCard.from_header(header, "/x/best.safetensors")
    rows = dict(card.lines())
    assert rows["Model"] == "resnet18 · 3D · segmentation" and rows["Weights"] == "checkpoint best.safetensors"
    assert rows["Training data"] == "3 cases of runs/cohort, 2 epoch(s)"
    assert rows["Recorded Dice"] == "WT 0.500 · TC 0.250 (validation)"
    assert rows["Initialisation"].startswith("random")


# ---------------------------------------------------------------------------- segmentation files


def test_read_segmentation_onto_the_case_grid(tmp_path) -> None:
    from nifti_cases import AFFINES, write_case

    files = write_case(tmp_path / "c", case_id="c1", affine=AFFINES["oblique"])
    case = load_case(tmp_path / "c")
    saved = save_segmentation(case.label, case, tmp_path / "pred.nii.gz")
    assert np.array_equal(read_segmentation(saved, case), case.label)
    # a BraTS 2023 name brings its own labels (ET = 3), read back in the case's (ET = 4)
    img = nib.load(files["seg"])
    values = convert_labels(np.asarray(img.dataobj), "brats2021", "brats2023")
    nib.save(nib.Nifti1Image(values, img.affine, img.header), tmp_path / "c1-seg.nii.gz")
    assert np.array_equal(read_segmentation(tmp_path / "c1-seg.nii.gz", case), case.label)


# ---------------------------------------------------------------------------- command line


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_report_command_writes_png_and_pdf(tmp_path) -> None:
    folder = sample_case_path()
    seg = next(folder.glob("*_seg.nii.gz"))
    for name in ("r.png", "r.pdf"):
        code, stdout, stderr = run("report", str(folder), "--seg", str(seg), "--out", str(tmp_path / name),
                                   "--model", str(demo_checkpoint_path()), "--uncertainty", "0.25")
        assert code == 0, stderr
        assert f"wrote {tmp_path / name}" in stdout
    assert Image.open(tmp_path / "r.png").size == pytest.approx((PAGE_IN[0] * PNG_DPI, PAGE_IN[1] * PNG_DPI), abs=1)
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_report_command_errors_are_one_line_naming_the_file(tmp_path) -> None:
    from nifti_cases import AFFINES, write_case, write_volume

    files = write_case(tmp_path / "c", case_id="c1")
    case_dir, seg = tmp_path / "c", files["seg"]
    other = write_case(tmp_path / "o", case_id="o1", shape=(20, 20, 16))["seg"]  # another grid
    shifted = write_volume(tmp_path / "shifted.nii.gz", np.asarray(nib.load(seg).dataobj), AFFINES["RAS"])
    bad_labels = write_volume(tmp_path / "bad.nii.gz", np.full(nib.load(seg).shape, 7, np.uint8), AFFINES["LPS"])
    fake_model = tmp_path / "model.safetensors"
    fake_model.write_bytes(b"not a checkpoint")
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    out = str(tmp_path / "r.png")
    cases = [
        (("report", str(tmp_path / "nope"), "--seg", str(seg), "--out", out), "nope: case not found"),
        (("report", str(case_dir), "--seg", str(tmp_path / "none.nii.gz"), "--out", out), "none.nii.gz: segmentation not found"),
        (("report", str(case_dir), "--seg", str(other), "--out", out), "differs from the expected (24, 20, 16) grid of case c1"),
        (("report", str(case_dir), "--seg", str(shifted), "--out", out), "shifted.nii.gz: affine differs"),
        (("report", str(case_dir), "--seg", str(bad_labels), "--out", out), "bad.nii.gz: has label values 7"),
        (("report", str(case_dir), "--seg", str(seg), "--out", str(tmp_path / "r.jpg")), "r.jpg: unknown format"),
        (("report", str(case_dir), "--seg", str(seg), "--out", str(existing)), "old.png: exists and was not replaced"),
        (("report", str(case_dir), "--seg", str(seg), "--out", out, "--model", str(fake_model)), "model.safetensors"),
        (("report", str(case_dir), "--seg", str(seg), "--out", out, "--uncertainty", "1.5"), "uncertainty score 1.5"),
    ]
    for args, message in cases:
        code, _, stderr = run(*args)
        assert code == 1, args
        assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert existing.read_bytes() == b"keep me" and not (tmp_path / "r.png").exists()
    code, _, stderr = run("report", str(case_dir), "--seg", str(seg), "--out", str(existing), "--overwrite")
    assert code == 0, stderr
    assert existing.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------------------- the Segment widget


def test_segment_widget_writes_the_report(make_napari_viewer, qtbot, tmp_path, screenshots_dir) -> None:
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    widget = viewer.window.add_plugin_dock_widget("napari-acs", "Segment")[1]
    widget.choice.backend.wait(120)
    qtbot.mouseClick(widget.report.button, Qt.MouseButton.LeftButton)
    assert widget.report.message.level == "warning" and "run a segmentation first" in widget.report.message.text()

    widget.run(device="cpu")
    assert widget.wait(300) and widget.result is not None, widget.message.text()
    out = tmp_path / "report.png"
    widget.report.path.set_text(str(out))
    qtbot.mouseClick(widget.report.button, Qt.MouseButton.LeftButton)
    assert widget.report.wait(120)
    assert widget.report.message.level == "success", widget.report.message.text()
    assert str(out) in widget.report.message.text()
    png = read_png(out)
    assert png.shape[1] == pytest.approx(PAGE_IN[0] * PNG_DPI, abs=1)
    assert any(mask.sum() > 100 for mask in colour_masks(png).values())  # the overlay is drawn
    shutil.copy(out, screenshots_dir / "report.png")

    stamp = out.stat().st_mtime_ns  # a second click never replaces it silently
    qtbot.mouseClick(widget.report.button, Qt.MouseButton.LeftButton)
    assert widget.report.message.level == "error" and "exists and was not replaced" in widget.report.message.text()
    assert out.stat().st_mtime_ns == stamp
    request = widget.report_request()
    assert request.model.kind == "demo" and request.sequence in ("FLAIR", "T1ce")  # the one on screen
