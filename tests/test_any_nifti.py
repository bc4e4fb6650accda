"""Real scans, not only BraTS folders (issue 21 points 1-2, issue 18 point 6).

Any NIfTI file opens through the plugin's reader with its geometry; files with any names
become a case once the user assigns their sequences (``load_case(files=...)``, the
``segment`` flags, the Load widget's table); napari offers our reader first. Real NIfTI
files written with nibabel in ``tmp_path``, a real napari viewer under Xvfb, the real
demo model for the command line.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs._napari._io import READER_PATTERNS, napari_get_reader, read_case, read_volumes
from napari_acs.io import BratsInputError, guess_sequence, load_case, load_volume
from napari_acs.io.sample import sample_case_path
from napari_acs.io.sequences import assign_sequences, guess_role
from nifti_cases import AFFINES, affine, brain, rotation_z, write_case, write_volume

#: A clinical-like post-contrast T1 grid, smaller: 0.94 x 0.94 x 1.2 mm, stored LPS like DICOM
#: exports, origin away from zero.
CLINICAL = affine(np.diag([-0.94, -0.94, 1.2]), (60.0, 80.0, -40.0))
SHAPE = (40, 36, 24)
MARKER = (7, 25, 17)  # a source voxel index (i, j, k), far from the centre on every axis


def scan(path: Path, *, aff: np.ndarray = CLINICAL, shape: tuple[int, ...] = SHAPE, seed: int = 0,
         marker: tuple[int, ...] | None = MARKER, dtype=np.int16) -> Path:
    """A head-like volume (noise everywhere, brighter ellipsoid) with one very bright marker voxel."""
    rng = np.random.default_rng(seed)
    data = rng.integers(5, 40, shape).astype(dtype)
    data[brain(shape[:3])] += 400
    if marker is not None:
        data[marker] = 4000
    return write_volume(path, data, aff)


def world_of(aff: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """World mm (RAS) of a source voxel index."""
    return (aff @ np.array([*index[:3], 1.0]))[:3]


def displayed_world(layer, marker_value: float = 4000) -> np.ndarray:
    """napari world coordinates of the brightest voxel of a layer: translate + index * scale."""
    data = np.asarray(layer.data)
    index = np.unravel_index(int(np.argmax(data)), data.shape)
    assert data[index] >= marker_value
    return np.asarray(layer.translate) + np.asarray(index) * np.asarray(layer.scale)


# ---------------------------------------------------------------------------- guessing sequences

GUESSES = [
    ("T1_post_gd.nii.gz", "t1c"), ("t1ce.nii.gz", "t1c"), ("T1Gd.nii", "t1c"), ("POST.nii.gz", "t1c"),
    ("sub-01_ce-gd_T1w.nii.gz", "t1c"), ("T1+C.nii", "t1c"), ("ax_gd.nii.gz", "t1c"), ("BraTS-GLI-00000-000-t1c.nii.gz", "t1c"),
    ("AX_FLAIR.nii", "t2f"), ("T2_FLAIR.nii.gz", "t2f"), ("3DFLAIR.nii.gz", "t2f"), ("case-t2f.nii.gz", "t2f"),
    ("flair.NII.GZ", "t2f"),
    ("t2.nii.gz", "t2w"), ("AX_T2W_TSE.nii", "t2w"), ("sub-01_T2w.nii.gz", "t2w"),
    ("t1.nii.gz", "t1n"), ("T1_pre.nii.gz", "t1n"), ("t1n.nii", "t1n"), ("sub-01_T1w.nii.gz", "t1n"),
    ("native.nii.gz", "t1n"), ("T1_MPRAGE.nii.gz", "t1n"), ("BraTS2021_00000_t1.nii.gz", "t1n"),
    # names that say nothing, or two things
    ("scan.nii.gz", None), ("series_0003.nii.gz", None), ("t1_t2.nii.gz", None), ("t1c_flair.nii.gz", None),
    ("flair_post.nii.gz", None), ("t1_pre_post.nii.gz", None), ("t2_t1ce.nii", None), ("", None),
]


@pytest.mark.parametrize(("name", "expected"), GUESSES)
def test_guess_sequence_from_common_names(name: str, expected: str | None) -> None:
    assert guess_sequence(name) == expected
    assert guess_sequence(name.upper()) == expected  # case-insensitive


def test_guess_role_spots_segmentations_and_assignment_refuses_doubles(tmp_path: Path) -> None:
    assert guess_role("tumour_labels.nii.gz") == "seg" and guess_role("x_seg.nii.gz") == "seg"
    assert guess_role("brain_mask.nii.gz") is None and guess_role("post.nii") == "t1c"
    files = assign_sequences([("a.nii", "t1ce"), ("b.nii", None), ("c.nii", "flair")])
    assert list(files) == ["t1c", "t2f"] and files["t1c"] == Path("a.nii")  # the first given: the reference
    with pytest.raises(BratsInputError, match=r"d\.nii: is assigned FLAIR, like c\.nii"):
        assign_sequences([("c.nii", "t2f"), ("d.nii", "flair")])
    with pytest.raises(BratsInputError, match="no sequence assigned"):
        assign_sequences([("b.nii", None), ("s.nii", "seg")])


# ---------------------------------------------------------------------------- any NIfTI opens


@pytest.mark.parametrize("geometry", ["clinical", "anisotropic", "oblique"])
def test_plain_3d_file_opens_with_its_geometry(make_napari_viewer, tmp_path: Path, geometry: str) -> None:
    aff = {"clinical": CLINICAL, "anisotropic": AFFINES["anisotropic"], "oblique": AFFINES["oblique"]}[geometry]
    path = scan(tmp_path / "scan.nii.gz", aff=aff)
    assert napari_get_reader(str(path)) is read_volumes
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-acs")
    assert layer.name == "scan" and layer._type_string == "image" and layer.data.ndim == 3
    volume = load_volume(path)
    assert layer.scale == pytest.approx(tuple(reversed(volume.spacing)))
    marker = world_of(aff, MARKER)
    if geometry != "oblique":  # axis-aligned: napari world = DICOM patient (z, y, x) = (S, -A, -R) mm, exactly
        assert displayed_world(layer) == pytest.approx([marker[2], -marker[1], -marker[0]], abs=1e-4)
    else:  # the rotation is not shown: within a voxel diagonal of where it lies
        assert np.abs(displayed_world(layer) - [marker[2], -marker[1], -marker[0]]).max() < 10
    # radiological display: the patient's right on the screen's left, anterior up
    data = np.asarray(layer.data)
    row, column = np.unravel_index(int(np.argmax(data.max(axis=0))), data.shape[1:])
    canonical = np.unravel_index(int(np.argmax(volume.data)), volume.shape)
    assert (row, column) == (volume.shape[1] - 1 - canonical[1], volume.shape[0] - 1 - canonical[0])
    if geometry == "clinical":
        assert layer.scale == pytest.approx((1.2, 0.94, 0.94))
    lo, hi = layer.contrast_limits
    assert lo <= 40 and 400 < hi


def test_plain_4d_file_opens_as_one_layer_with_a_volume_axis(make_napari_viewer, tmp_path: Path) -> None:
    data = np.zeros((*SHAPE, 3), dtype=np.float32)
    for t in range(3):
        data[..., t] = brain(SHAPE) * (100.0 * (t + 1))
    data[(*MARKER, 2)] = 5000  # the marker only in the third volume
    path = write_volume(tmp_path / "dwi.nii.gz", data, CLINICAL)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-acs")
    assert layer.name == "dwi" and layer.data.shape == (3, SHAPE[2], SHAPE[1], SHAPE[0])
    assert layer.scale == pytest.approx((1.0, 1.2, 0.94, 0.94))
    where = displayed_world(layer, 5000)
    marker = world_of(CLINICAL, MARKER)
    assert where == pytest.approx([2.0, marker[2], -marker[1], -marker[0]], abs=1e-4)
    assert layer.metadata["napari_acs"]["volumes"] == 3


def test_a_brats_case_keeps_its_reader_and_layers_line_up_with_plain_files(
    make_napari_viewer, tmp_path: Path
) -> None:
    files = write_case(tmp_path / "case01")
    assert napari_get_reader(str(tmp_path / "case01")) is read_case
    assert napari_get_reader(str(files["t2"])) is read_case
    viewer = make_napari_viewer()
    case_layers = viewer.open(str(tmp_path / "case01"), plugin="napari-acs")
    assert [layer.name for layer in case_layers][-1] == "case01 seg"
    # the FLAIR file opened on its own (as a plain volume) lies exactly on the case's FLAIR layer
    (plain,) = read_volumes(str(files["flair"]))
    assert tuple(plain[1]["translate"]) == pytest.approx(tuple(case_layers[3].translate))
    assert tuple(plain[1]["scale"]) == pytest.approx(tuple(case_layers[3].scale))
    assert np.array_equal(plain[0], case_layers[3].data)
    assert plain[1]["metadata"]["modality"] == "FLAIR"  # from the name: FLAIR's window presets apply


def test_files_it_cannot_read_are_declined(tmp_path: Path) -> None:
    declined = []
    text = tmp_path / "notes.nii"
    text.write_text("not an image")
    declined.append(text)
    fake_gz = tmp_path / "fake.nii.gz"
    fake_gz.write_bytes(b"\x1f\x8b but then nothing")
    declined.append(fake_gz)
    declined.append(write_volume(tmp_path / "photo.nii.gz", np.ones((64, 48, 1), np.uint8), np.eye(4)))  # 2D
    declined.append(write_volume(tmp_path / "five_d.nii.gz", np.ones((8, 8, 8, 2, 2), np.int16), np.eye(4)))
    rgb = np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    declined.append(write_volume(tmp_path / "colour.nii", rgb, np.eye(4)))
    huge = nib.Nifti1Header()
    huge.set_data_shape((1024, 1024, 1024))
    huge.set_data_dtype(np.int16)
    forged = tmp_path / "forged.nii"
    forged.write_bytes(huge.binaryblock + b"\0" * 4)  # claims 2 GiB, holds 352 bytes
    declined.append(forged)
    truncated = scan(tmp_path / "cut.nii")
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    declined.append(truncated)
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n")
    declined.append(png)
    for path in declined:
        assert napari_get_reader(str(path)) is None, path.name
    assert napari_get_reader([str(scan(tmp_path / "a.nii.gz")), str(text)]) is None  # all or nothing
    assert napari_get_reader(str(tmp_path)) is None  # a folder that is not a case


def test_unusable_voxels_are_refused_naming_the_file(tmp_path: Path) -> None:
    data = np.ones(SHAPE, np.float32)
    data[3, 3, 3] = np.nan
    nan = write_volume(tmp_path / "nan.nii.gz", data, CLINICAL)
    with pytest.raises(BratsInputError, match=r"nan\.nii\.gz: has 1 NaN and 0 infinite voxels"):
        load_volume(nan)
    empty = write_volume(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.int16), CLINICAL)
    with pytest.raises(BratsInputError, match=r"empty\.nii\.gz: is all-zero"):
        load_volume(empty)


# ---------------------------------------------------------------------------- sequences assigned


def two_sequences(folder: Path, *, flair_affine: np.ndarray = CLINICAL, flair_shape=SHAPE) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return (scan(folder / "T1_post_gd.nii.gz", seed=1),
            scan(folder / "AX_FLAIR.nii", aff=flair_affine, shape=flair_shape, seed=2,
                 marker=MARKER if flair_shape == SHAPE else None))


def test_load_case_from_assigned_files_reports_missing_sequences(tmp_path: Path) -> None:
    post, flair = two_sequences(tmp_path)
    case = load_case(files={"t1c": post, "flair": flair})
    assert case.missing == ("t1n", "t2w") and case.modalities == ("t1n", "t1c", "t2w", "t2f")
    assert case.case_id == "T1_post_gd" and case.convention == "brats2023" and case.label is None
    assert not case.image[0].any() and not case.image[2].any()  # missing: zero-filled channels
    expected = load_volume(post).data
    assert np.array_equal(case.image[1], expected) and np.array_equal(case.image[3], load_volume(flair).data)
    assert np.allclose(case.source.affine, CLINICAL)
    # the same from BraTS 2021 names as keys, positionally; the first given is the reference grid
    again = load_case({"flair": flair, "t1ce": post})
    assert again.case_id == "AX_FLAIR" and again.missing == ("t1n", "t2w")
    # a complete set has nothing missing and no warning
    t1, t2 = scan(tmp_path / "t1.nii.gz", seed=3), scan(tmp_path / "t2.nii.gz", seed=4)
    full = load_case(files={"t1c": post, "t2f": flair, "t1n": t1, "t2w": t2})
    assert full.missing == () and all(channel.any() for channel in full.image)


@pytest.mark.parametrize(
    ("flair_affine", "flair_shape", "problem"),
    [
        (affine(np.diag([-0.94, -0.94, 5.0]), (60.0, 80.0, -40.0)), (40, 36, 6), "shape (40, 36, 6) differs"),
        (affine(rotation_z(8) @ np.diag([-0.94, -0.94, 1.2]), (60.0, 80.0, -40.0)), SHAPE, "affine differs"),
    ],
    ids=["5mm_slices", "moved"],
)
def test_sequences_on_different_grids_are_refused(tmp_path: Path, flair_affine, flair_shape, problem: str) -> None:
    post, flair = two_sequences(tmp_path, flair_affine=flair_affine, flair_shape=flair_shape)
    with pytest.raises(BratsInputError) as caught:
        load_case(files={"t1c": post, "flair": flair})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(flair))
    assert problem in message and "T1_post_gd.nii.gz" in message
    assert "co-register and resample" in message and "preparation step" in message


def test_assigned_files_bad_input_is_explained(tmp_path: Path) -> None:
    post, flair = two_sequences(tmp_path)
    with pytest.raises(BratsInputError, match=r"post_gd\.nii\.gz: unknown sequence 'dwi'"):
        load_case(files={"dwi": post})
    with pytest.raises(BratsInputError, match="is given for both t1c and t2f"):
        load_case(files={"t1c": post, "flair": post})
    with pytest.raises(BratsInputError, match="a second file for t1c"):
        load_case(files={"t1c": post, "t1ce": flair})
    with pytest.raises(BratsInputError, match=r"gone\.nii\.gz: no such file"):
        load_case(files={"t1c": tmp_path / "gone.nii.gz"})
    with pytest.raises(BratsInputError, match="only a segmentation given"):
        load_case(files={"seg": post})


# ---------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_segment_command_takes_sequence_files_with_any_names(tmp_path: Path) -> None:
    """The sample case's T1ce and FLAIR under scanner-like names: a seg on the T1ce file's grid."""
    from napari_acs.cli import main
    from napari_acs.metrics import brats_metrics

    sample = sample_case_path()
    post = shutil.copy(next(sample.glob("*_t1ce.nii.gz")), tmp_path / "T1_post_gd.nii.gz")
    flair = shutil.copy(next(sample.glob("*_flair.nii.gz")), tmp_path / "AX_FLAIR.nii.gz")
    out = tmp_path / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["segment", "--t1c", str(post), "--flair", str(flair), "--out", str(out), "--no-progress"])
    assert code == 0, stderr.getvalue()
    written = nib.load(out / "T1_post_gd-seg.nii.gz")
    source = nib.load(post)
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    labels = np.asarray(written.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels > 0).any()  # BraTS 2023 labels
    assert "warning: missing T1, T2" in stderr.getvalue() and "less reliable" in stderr.getvalue()
    assert "T1_post_gd" in stdout.getvalue()
    assert "T1_post_gd" in (out / "volumes.csv").read_text()
    # what the two sequences give, against the sample's reference (WT recorded in the report)
    reference = np.asarray(nib.load(next(sample.glob("*_seg.nii.gz"))).dataobj)
    wt = brats_metrics(np.where(labels == 3, 4, labels), reference)["WT"]["dice"]
    print(f"WT Dice from T1ce + FLAIR only: {wt:.3f}")
    assert wt > 0.1


def test_segment_command_refuses_a_mix_and_nothing(tmp_path: Path) -> None:
    from napari_acs.cli import main

    post, flair = two_sequences(tmp_path)
    for args, problem in (
        (["segment", str(tmp_path), "--t1c", str(post)], "not both"),
        (["segment"], "nothing to segment"),
    ):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main([*args, "--out", str(tmp_path / "out"), "--no-progress"])
        assert code == 1 and problem in stderr.getvalue()
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the Load widget


def test_load_widget_assigns_guessed_sequences_and_says_what_is_missing(
    make_napari_viewer, qtbot, tmp_path: Path, screenshots_dir: Path
) -> None:
    sample = sample_case_path()
    post = shutil.copy(next(sample.glob("*_t1ce.nii.gz")), tmp_path / "T1_post_gd.nii.gz")
    flair = shutil.copy(next(sample.glob("*_flair.nii.gz")), tmp_path / "AX_FLAIR.nii.gz")
    mystery = shutil.copy(next(sample.glob("*_t2.nii.gz")), tmp_path / "series_0003.nii.gz")
    viewer = make_napari_viewer()
    widget = viewer.window.add_plugin_dock_widget("napari-acs", "Load BraTS case")[1]
    widget.choose_files([str(post), str(flair), str(mystery)])
    table = widget.sequences
    assert not table.isHidden() and widget.path.text == ""
    assert [combo.currentText() for combo in table.combos] == ["T1ce (t1c)", "FLAIR (t2f)", "not used"]
    assert "Missing T1, T2" in table.missing.text()
    table.set_role(2, "t2w")  # the user says what series 3 is
    assert "Missing T1:" in table.missing.text() and "T2" not in table.missing.text().split(":")[0]
    widget.open_case()
    widget.runner.wait(60)
    qtbot.waitUntil(lambda: widget.case is not None, timeout=10_000)
    assert [layer.name for layer in viewer.layers] == ["T1_post_gd T1ce", "T1_post_gd T2", "T1_post_gd FLAIR"]
    assert widget.message.level == "warning" and "Missing T1" in widget.message.text()
    assert viewer.layers.selection.active.name == "T1_post_gd FLAIR" and viewer.layers["T1_post_gd FLAIR"].visible
    assert widget.case.missing == ("t1n",)
    viewer.window.show()
    viewer.window.resize(1500, 940)
    qtbot.waitExposed(viewer.window._qt_window)
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(str(screenshots_dir / "load_assigned_sequences.png"), canvas_only=False)
    assert shot.std() > 10

    # two files for one sequence: said before anything is read
    table.set_role(2, "t2f")
    widget.open_case()
    assert widget.message.level == "error"
    assert "series_0003.nii.gz: is assigned FLAIR, like AX_FLAIR.nii.gz" in widget.message.text()
    # a BraTS case's files still go to the path field
    files = write_case(tmp_path / "case01")
    widget.choose_files([str(p) for p in files.values()])
    assert table.isHidden() and widget.path.text.count(";") == 4


# ---------------------------------------------------------------------------- the reader napari offers


def test_napari_offers_our_reader_first_and_uses_it_when_the_user_chooses(
    make_napari_viewer, qtbot, tmp_path: Path, monkeypatch
) -> None:
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.plugins import _npe2
    from napari.settings import get_settings
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_acs._napari._io import is_default_reader, use_napari_acs_by_default

    folder = tmp_path / "BraTS-GLI-00001-000"
    write_case(folder, case_id="BraTS-GLI-00001-000", convention="brats2023")
    plain = scan(tmp_path / "scan.nii.gz")
    viewer = make_napari_viewer()
    # File > Open Folder / Open File: napari's builtins claim both too, so napari asks, and the
    # radio button it checks first (display names in order) is ours
    for path in (folder, plain):
        readers = _npe2.get_readers(str(path))
        assert {"napari", "napari-acs"} <= set(readers)
        dialog = QtReaderDialog(pth=str(path), readers=readers)
        qtbot.addWidget(dialog)
        assert dialog._get_plugin_choice() == readers["napari-acs"]
    # ... and what File > Open Folder does: the user presses OK on napari's dialog as it comes
    chosen: list[str] = []

    def press_ok() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QtReaderDialog) and widget.isVisible():
                chosen.append(widget._get_plugin_choice())
                widget.accept()

    timer = QTimer()
    timer.timeout.connect(press_ok)
    timer.start(100)
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)
    timer.stop()
    assert chosen == [readers["napari-acs"]]
    assert [layer.name for layer in viewer.layers][-1] == "BraTS-GLI-00001-000 seg"
    viewer.layers.clear()
    # the user's opt-in (the Load widget's check box) is napari's own reader preference; the
    # settings are napari's, redirected to tmp_path (make_napari_viewer resets them afterwards)
    settings = get_settings()
    monkeypatch.setattr(settings, "config_path", tmp_path / "napari_settings.yaml")
    assert not is_default_reader()
    use_napari_acs_by_default()
    assert is_default_reader() and all(settings.plugins.extension2reader[p] == "napari-acs" for p in READER_PATTERNS)
    # plugin=None: "read from preferences" (a bare viewer.open(path) means plugin="napari",
    # napari's builtins, by napari's own default); this is also what File > Open does
    layers = viewer.open(str(folder), plugin=None)
    assert [layer.name for layer in layers][-1] == "BraTS-GLI-00001-000 seg"
    (layer,) = viewer.open(str(plain), plugin=None)
    assert layer.name == "scan" and layer.scale == pytest.approx((1.2, 0.94, 0.94))
    marker = world_of(CLINICAL, MARKER)
    assert displayed_world(layer) == pytest.approx([marker[2], -marker[1], -marker[0]], abs=1e-4)
    use_napari_acs_by_default(False)
    assert not is_default_reader() and "*.nii.gz" not in settings.plugins.extension2reader


def test_a_plain_named_scan_is_shown_like_a_case(make_napari_viewer, qtbot, tmp_path: Path,
                                                 screenshots_dir: Path) -> None:
    """The sample's T1ce under a scanner-like name: one layer, the case's geometry, looked at."""
    sample = sample_case_path()
    post = shutil.copy(next(sample.glob("*_t1ce.nii.gz")), tmp_path / "scan.nii.gz")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(post), plugin="napari-acs")
    case_layers = read_case(str(sample))
    t1ce = next(data for data in case_layers if data[1]["name"].endswith(" T1ce"))
    assert layer.name == "scan" and np.array_equal(layer.data, t1ce[0])
    assert "modality" not in layer.metadata  # "scan" names no sequence
    assert tuple(layer.translate) == pytest.approx(tuple(t1ce[1]["translate"]))
    assert tuple(layer.scale) == pytest.approx(tuple(t1ce[1]["scale"]))
    viewer.window.show()
    viewer.window.resize(1200, 900)
    qtbot.waitExposed(viewer.window._qt_window)
    viewer.dims.set_point(0, layer.translate[0] + 77 * layer.scale[0])
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(str(screenshots_dir / "plain_named_scan.png"), canvas_only=False)
    assert shot[..., :3].std() > 10
