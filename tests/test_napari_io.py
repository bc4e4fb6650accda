"""The plugin's reader, writer and sample data in a real napari viewer under Xvfb."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_acs._napari._io import napari_get_reader
from napari_acs._napari._layers import from_display, to_display
from napari_acs.io import load_case
from napari_acs.io.labels import SUB_REGION_COLOURS
from nifti_cases import AFFINES, write_case


def test_display_order_is_a_view_and_inverts() -> None:
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    shown = to_display(volume)
    assert shown.shape == (6, 5, 4) and np.shares_memory(shown, volume)
    # row 0 is the most anterior (max Y), column 0 the patient's right (max X)
    assert shown[2, 0, 0] == volume[3, 4, 2]
    assert np.array_equal(from_display(shown), volume)


def test_reader_declines_what_it_does_not_read(tmp_path: Path) -> None:
    other = tmp_path / "notes.nii.gz"
    other.write_bytes(b"not a case")
    assert napari_get_reader(str(other)) is None
    assert napari_get_reader(str(tmp_path)) is None


@pytest.mark.parametrize("geometry", ["LPS", "oblique"])
def test_open_case_folder_and_file(make_napari_viewer, tmp_path: Path, geometry: str) -> None:
    files = write_case(tmp_path / "case01", affine=AFFINES[geometry])
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "case01"), plugin="napari-acs")
    names = [layer.name for layer in layers]
    assert names == ["case01 T1", "case01 T1ce", "case01 T2", "case01 FLAIR", "case01 seg"]
    case = load_case(tmp_path / "case01")
    for index, layer in enumerate(layers[:4]):
        assert np.array_equal(from_display(layer.data), case.image[index])
        lo, hi = layer.contrast_limits
        assert 0 < lo < (index + 1) * 1000 < hi  # the brain's 0.5-99.5 percentiles ("Auto brain")
        assert np.allclose(layer.metadata["napari_acs"]["affine"], case.affine)
    seg = layers[-1]
    assert seg._type_string == "labels"
    assert tuple(seg.scale) == pytest.approx(tuple(reversed(case.spacing)))
    assert tuple(seg.colormap.map(4)) == pytest.approx(SUB_REGION_COLOURS["ET"])
    # one file of the case opens the whole case
    more = viewer.open(str(files["t2"]), plugin="napari-acs")
    assert len(more) == 5


def test_save_labels_layer_lands_on_the_source_grid(make_napari_viewer, tmp_path: Path) -> None:
    files = write_case(tmp_path / "case01", affine=AFFINES["anisotropic"])
    viewer = make_napari_viewer()
    *_, seg = viewer.open(str(tmp_path / "case01"), plugin="napari-acs")
    seg.data[seg.data == 4] = 1  # an edit: ET painted as NCR
    out = tmp_path / "edited_seg.nii.gz"
    seg.save(str(out), plugin="napari-acs")
    source = nib.load(files["seg"])
    written = nib.load(out)
    expected = np.asarray(source.dataobj)
    expected[expected == 4] = 1
    assert written.shape == source.shape
    assert np.allclose(written.affine, source.affine)
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj), expected)


def test_sample_case_opens_and_looks_like_mri(make_napari_viewer, screenshots_dir: Path) -> None:
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("napari-acs", "brats_sample")
    assert [layer._type_string for layer in layers] == ["image"] * 4 + ["labels"]
    seg = layers[-1]
    # go to the axial slice through the tumour's centre
    z = int(np.argmax((seg.data > 0).sum(axis=(1, 2))))
    viewer.dims.set_point(0, z * seg.scale[0])
    viewer.reset_view()
    shot = viewer.screenshot(str(screenshots_dir / "sample_case.png"), canvas_only=False)
    canvas = viewer.screenshot(canvas_only=True)
    assert shot.std() > 10 and canvas[..., :3].std() > 10
    # grey MRI has no colour: strongly coloured pixels are the tumour overlay
    rgb = canvas[..., :3].astype(int)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    assert (chroma > 60).sum() > 200
