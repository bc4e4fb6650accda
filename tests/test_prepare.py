"""Raw exams prepared the way BraTS prepares them (issue 21, point 3).

A raw-exam-like input is made from a synthetic case: the synthetic brain inside a head (a
dark CSF gap, dark bone and a bright scalp, shells grown around the brain mask), each
sequence moved by its own random rigid motion (a few degrees and mm, SimpleITK resampling)
onto its own grid and orientation (FLAIR in 5 mm slices), plain file names. The prepared
case is checked against the truth: registration error in mm (the recovered transform vs
the true motion, at brain points), brain-mask Dice, the cache, cancel, each bad input's
message. The real anisotropic input is pyradiomics' brain1 (tests/data/brain1, see its
NOTICE): a post-contrast T1 with skull, 256 x 256 x 25 at 0.78 x 0.78 x 6.5 mm, and a lesion.
deepbet runs twice in this file (the synthetic exam, brain1: module fixtures).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from napari_acs.io import BratsInputError, load_case, load_volume
from napari_acs.io.sample import SAMPLE_CASE_ID, sample_case_path
from napari_acs.prepare import PrepareError, PrepareSettings, RegistrationSettings, prepare_exam, to_reference_grid
from napari_acs.prepare.brain import BrainNotFound, check_brain
from napari_acs.prepare.cache import MANIFEST, read_manifest
from napari_acs.prepare.grid import Grid, lps_points, resample, to_sitk
from napari_acs.prepare.writeback import labels_to_grid, reference_grid
from napari_acs.progress import Cancelled
from napari_acs.synthetic import synthesize

BRAIN1 = Path(__file__).parent / "data" / "brain1"
#: Shells around the brain, per contrast: (CSF gap, bone, scalp) intensity relative to white matter.
SHELLS = {"t1": (0.25, 0.08, 1.3), "t1ce": (0.25, 0.08, 1.3), "flair": (0.2, 0.08, 1.1)}
#: The raw sequences: BraTS 2021 name -> (file name, voxel size mm, axis signs (RAS+ = +1)).
RAW = {"t1ce": ("post_gd.nii.gz", (1.1, 1.1, 1.3), (-1, -1, 1)),
       "t1": ("T1_MPRAGE.nii.gz", (1.0, 1.0, 1.0), (1, 1, 1)),
       "flair": ("AX_FLAIR_5mm.nii.gz", (0.9, 0.9, 5.0), (1, -1, 1))}
FILES = {"t1ce": "t1c", "t1": "t1n", "flair": "t2f"}  # -> prepare_exam's keys
FOV_MM = (210.0, 210.0, 150.0)


class Recorder:
    """progress(fraction, message) that keeps the messages; cancels once one contains ``cancel_at``."""

    def __init__(self, cancel_at: str | None = None) -> None:
        self.messages: list[str] = []
        self.cancel_at = cancel_at
        self.cancelled = False

    def __call__(self, fraction: float, message: str) -> None:
        assert 0.0 <= fraction <= 1.0
        self.messages.append(message)
        if self.cancel_at is not None and self.cancel_at in message:
            self.cancelled = True

    def cancel(self) -> bool:
        return self.cancelled


def _head(case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each contrast of ``case`` with a head around the brain: 3 mm CSF, 4 mm bone, 4 mm scalp, noise."""
    spacing = np.abs(np.diag(case.affine)[:3])
    outside = ndimage.distance_transform_edt(~case.brain, sampling=spacing)
    heads = {}
    for modality, (csf, bone, scalp) in SHELLS.items():
        white = float(np.median(case.images[modality][case.brain]))
        data = case.images[modality].astype(np.float32)
        for low, high, level in ((0, 3, csf), (3, 7, bone), (7, 11, scalp)):
            data[(outside > low) & (outside <= high)] = level * white
        heads[modality] = data + np.abs(rng.normal(0.0, 0.02 * white, data.shape)).astype(np.float32)
    return heads


def _motion(rng: np.random.Generator, centre_lps: np.ndarray) -> sitk.Euler3DTransform:
    """A random rigid motion about the head's centre: up to 4 degrees and 4 mm per axis."""
    motion = sitk.Euler3DTransform()
    motion.SetCenter([float(c) for c in centre_lps])
    motion.SetRotation(*(float(a) for a in np.radians(rng.uniform(-4.0, 4.0, 3))))
    motion.SetTranslation([float(t) for t in rng.uniform(-4.0, 4.0, 3)])
    return motion


def _raw_grid(spacing: tuple[float, ...], signs: tuple[int, ...], centre_ras: np.ndarray) -> Grid:
    shape = tuple(int(round(f / s)) for f, s in zip(FOV_MM, spacing))
    affine = np.diag([*(np.array(spacing) * np.array(signs)), 1.0])
    affine[:3, 3] = centre_ras - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return Grid(shape, affine)


def write_raw_exam(folder: Path) -> dict:
    """A raw exam in ``folder``: three sequences (no T2), each moved and on its own grid, as
    ``files`` ({"t1c": post_gd.nii.gz, "t1n": ..., "t2f": ...}); the truth (``case``, its grid
    ``truth``, each sequence's ``motions`` and ``grids``, by BraTS 2021 name)."""
    rng = np.random.default_rng(11)
    case = synthesize(5, shape=(160, 160, 104), convention="brats2023")  # 1.5 mm voxels over the BraTS field of view
    truth = Grid(case.shape, case.affine)
    heads = _head(case, rng)
    centre_ras = nib.affines.apply_affine(case.affine, np.argwhere(case.brain).mean(0))
    files, motions, grids = {}, {}, {}
    for modality, (name, spacing, signs) in RAW.items():
        motions[modality] = _motion(rng, lps_points(centre_ras[None])[0])
        grids[modality] = _raw_grid(spacing, signs, centre_ras + rng.uniform(-5.0, 5.0, 3))
        source = to_sitk(heads[modality], truth)
        if spacing[2] > 2:  # thick slices: the slice profile blurs along z
            source = sitk.SmoothingRecursiveGaussian(source, [0.5, 0.5, spacing[2] / 2.355])
        data = resample(source, grids[modality], motions[modality])
        files[FILES[modality]] = folder / name
        nib.save(nib.Nifti1Image(np.rint(data).astype(np.int16), grids[modality].affine), folder / name)
    return {"case": case, "truth": truth, "files": files, "motions": motions, "grids": grids, "folder": folder}


@pytest.fixture(scope="module")
def raw_exam(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The raw exam of :func:`write_raw_exam` in a folder of this module."""
    return write_raw_exam(tmp_path_factory.mktemp("exam"))


@pytest.fixture(scope="module")
def prepared(raw_exam: dict):
    """The raw exam prepared with the defaults (cached next to it); the progress messages."""
    recorder = Recorder()
    exam = prepare_exam(raw_exam["files"], reference="t1c", progress=recorder)
    return exam, recorder.messages


def _brain_points(raw_exam: dict) -> list[list[float]]:
    """Every 400th brain voxel of the truth, as points of the reference (t1c) frame, LPS mm."""
    case, reference_motion = raw_exam["case"], raw_exam["motions"]["t1ce"]
    points = lps_points(nib.affines.apply_affine(case.affine, np.argwhere(case.brain)[::400]))
    inverse = reference_motion.GetInverse()  # the reference shows truth point M(p) at p
    return [inverse.TransformPoint(p.tolist()) for p in points]


def test_registration_error_under_1_5_mm(raw_exam: dict, prepared) -> None:
    exam, _ = prepared
    points = _brain_points(raw_exam)
    reference_motion = raw_exam["motions"]["t1ce"]
    assert set(exam.transforms) == {"t1n", "t2f"}
    for modality, kind in (("t1", "t1n"), ("flair", "t2f")):
        undo = raw_exam["motions"][modality].GetInverse()
        # p in the reference shows truth point Mref(p); the sequence shows it at M^-1(Mref(p)).
        errors = [np.linalg.norm(np.subtract(exam.transforms[kind].TransformPoint(p),
                                             undo.TransformPoint(reference_motion.TransformPoint(p))))
                  for p in points]
        print(f"{kind}: registration error mean {np.mean(errors):.2f} mm, max {np.max(errors):.2f} mm "
              f"over {len(points)} brain points; {exam.registrations[kind]}")
        assert np.max(errors) < 1.5
        assert exam.registrations[kind]["metric"] < -0.3


def test_prepared_case_is_bratslike(raw_exam: dict, prepared) -> None:
    exam, messages = prepared
    assert exam.steps == {"registration": "done", "resampling": "done", "brain extraction": "done"}
    assert exam.case.spacing == pytest.approx((1.0, 1.0, 1.0))
    reference = raw_exam["grids"]["t1ce"]  # 1.1 x 1.1 x 1.3 mm: the 1 mm grid covers its field of view
    assert exam.case.shape == tuple(int(np.ceil(n * s - 1e-6)) for n, s in zip(reference.shape, reference.spacing))
    assert exam.case.modalities == ("t1n", "t1c", "t2w", "t2f") and exam.case.missing == ("t2w",)
    assert not exam.case.image[2].any()  # the missing T2 is zero-filled
    assert not exam.case.image[:, ~exam.mask].any()  # skull-stripped
    assert all(exam.case.image[c][exam.mask].mean() > 50 for c in (0, 1, 3))
    assert any("registering t2f to t1c: level 3/3" in m for m in messages)
    assert any("extracting the brain (deepbet on t1n)" in m for m in messages)
    assert exam.folder == raw_exam["folder"] / ".napari-acs" / "prepared" / "post_gd"
    # The truth's brain seen on the prepared grid: prepared point p shows truth point Mref(p).
    truth = resample(to_sitk(raw_exam["case"].brain.astype(np.float32), raw_exam["truth"]), exam.grid,
                     raw_exam["motions"]["t1ce"]) > 0.5
    dice = 2.0 * float((truth & exam.mask).sum()) / float(truth.sum() + exam.mask.sum())
    print(f"brain mask Dice {dice:.4f} (prepared {exam.brain_ml:.0f} mL, truth {truth.sum() / 1000:.0f} mL)")
    assert dice >= 0.9


def test_prepared_folder_is_a_case_and_is_reused(raw_exam: dict, prepared) -> None:
    exam, _ = prepared
    folder = exam.folder
    assert {p.name for p in folder.iterdir()} == {
        "post_gd-brainmask.nii.gz", "post_gd-t1c.nii.gz", "post_gd-t1n.nii.gz", "post_gd-t2f.nii.gz",
        "post_gd-t1n.tfm", "post_gd-t2f.tfm", MANIFEST}
    written = load_case(files={k: folder / f"post_gd-{k}.nii.gz" for k in ("t1c", "t1n", "t2f")})
    assert np.allclose(written.image, exam.case.image) and np.allclose(written.affine, exam.case.affine)
    recorder = Recorder()
    again = prepare_exam(raw_exam["files"], reference="t1c", progress=recorder)
    assert recorder.messages == [f"reusing the prepared case in {folder}"]  # no reading, no registering
    assert again.reused and np.allclose(again.case.image, exam.case.image) and (again.mask == exam.mask).all()
    point = [10.0, -20.0, 30.0]
    assert np.allclose(again.transforms["t2f"].TransformPoint(point), exam.transforms["t2f"].TransformPoint(point))


def test_changed_input_is_prepared_again_and_cancel_writes_nothing(raw_exam: dict, prepared, tmp_path: Path) -> None:
    exam, _ = prepared
    manifest = (exam.folder / MANIFEST).read_text()
    flair = raw_exam["files"]["t2f"]
    stat = flair.stat()
    os.utime(flair, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "changed": the cache key differs
    try:
        recorder = Recorder(cancel_at="registering t1n to t1c: level 1/3")
        with pytest.raises(Cancelled):
            prepare_exam(raw_exam["files"], reference="t1c", progress=recorder, cancel=recorder.cancel)
        assert any(m.startswith("reading") for m in recorder.messages)  # redone, not reused
        assert (exam.folder / MANIFEST).read_text() == manifest  # the earlier case untouched
        assert sorted(p.name for p in exam.folder.parent.iterdir()) == ["post_gd"]  # no temporary left
        out = tmp_path / "out"
        recorder = Recorder(cancel_at="registering t1n to t1c: level 1/3")
        with pytest.raises(Cancelled):
            prepare_exam(raw_exam["files"], reference="t1c", out_dir=out, progress=recorder, cancel=recorder.cancel)
        assert list(tmp_path.iterdir()) == []
    finally:
        os.utime(flair, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_segmentation_written_back_on_the_reference_grid(raw_exam: dict, prepared, tmp_path: Path) -> None:
    exam, _ = prepared
    truth_seg = resample(to_sitk(raw_exam["case"].seg.astype(np.float32), raw_exam["truth"]), exam.grid,
                         raw_exam["motions"]["t1ce"], labels=True)
    seg_path = tmp_path / "post_gd-seg.nii.gz"
    nib.save(nib.Nifti1Image(truth_seg, exam.case.affine), seg_path)
    out = to_reference_grid(seg_path, exam.folder, tmp_path / "seg_on_post_gd.nii.gz")
    written, source = nib.load(out), nib.load(raw_exam["files"]["t1c"])
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    on_reference = np.asarray(written.dataobj)
    reference = raw_exam["grids"]["t1ce"]
    expected = resample(to_sitk(raw_exam["case"].seg.astype(np.float32), raw_exam["truth"]), reference,
                        raw_exam["motions"]["t1ce"], labels=True)
    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())

    # Two nearest-neighbour resamplings (1.5 mm truth -> 1 mm -> 1.1 mm) against one: thin parts
    # (the enhancing rim) lose most at their edges.
    assert dice(on_reference > 0, expected > 0) > 0.95
    assert all(dice(on_reference == value, expected == value) > 0.8 for value in (1, 2, 3))
    with pytest.raises(PrepareError, match="write-back: is not on the prepared grid"):
        to_reference_grid(raw_exam["files"]["t2f"], exam.folder, tmp_path / "x.nii.gz")
    with pytest.raises(PrepareError, match="write-back: not a prepared case folder"):
        to_reference_grid(seg_path, tmp_path, tmp_path / "x.nii.gz")


# ---------------------------------------------------------------------------- bad input


def _copy(path: Path, folder: Path, name: str, *, shift_mm: float = 0.0, data: np.ndarray | None = None) -> Path:
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += shift_mm
    values = np.asarray(image.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(values, affine), folder / name)
    return folder / name


def test_fields_of_view_that_do_not_overlap(raw_exam: dict, tmp_path: Path) -> None:
    far = _copy(raw_exam["files"]["t2f"], tmp_path, "flair_other_exam.nii.gz", shift_mm=600.0)
    files = {"t1c": raw_exam["files"]["t1c"], "t2f": far}
    with pytest.raises(PrepareError) as refused:
        prepare_exam(files, out_dir=tmp_path / "out")
    assert str(refused.value).startswith(f"{far}: field of view: does not overlap the reference t1c (post_gd.nii.gz)")
    assert "\n" not in str(refused.value) and not (tmp_path / "out").exists()


def test_registration_that_does_not_fit(raw_exam: dict, tmp_path: Path) -> None:
    flair = raw_exam["files"]["t2f"]
    noise = np.random.default_rng(0).integers(50, 400, nib.load(flair).shape).astype(np.int16)
    unrelated = _copy(flair, tmp_path, "flair_noise.nii.gz", data=noise)
    settings = PrepareSettings(registration=RegistrationSettings(iterations=10))
    with pytest.raises(PrepareError) as refused:
        prepare_exam({"t1c": raw_exam["files"]["t1c"], "flair": unrelated}, settings=settings,
                     out_dir=tmp_path / "out")
    message = str(refused.value)
    assert message.startswith(f"{unrelated}: registration to t1c: did not converge to a fit: mutual information")
    assert "\n" not in message and not (tmp_path / "out").exists()


def test_not_a_head_scan(tmp_path: Path) -> None:
    data = np.zeros((60, 60, 40), dtype=np.int16)
    data[28:32, 28:32, 18:22] = 300  # a small object in air: "skull-stripped" by the numbers
    path = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    with pytest.raises(PrepareError) as refused:
        prepare_exam({"t1c": path}, out_dir=tmp_path / "out")
    assert str(refused.value).startswith(f"{path}: brain: found 0.064 mL of brain")
    assert "not a head scan?" in str(refused.value) and not (tmp_path / "out").exists()
    # What deepbet draws around a small bright ball in noise, or around pure noise, is refused too.
    rng = np.random.default_rng(1)
    ball = (np.indices((80, 80, 80)) - 40.0) ** 2
    volume = np.where(ball.sum(0) < 15**2, 500.0, 0.0) + np.abs(rng.normal(0, 5, (80, 80, 80)))
    with pytest.raises(BrainNotFound, match="has signal: not a head scan"):
        check_brain(volume, np.ones(volume.shape, dtype=bool), 0.001)
    with pytest.raises(BrainNotFound, match="is noise, not anatomy"):
        check_brain(rng.normal(100, 20, volume.shape), np.ones(volume.shape, dtype=bool), 0.001)


def test_bad_arguments(raw_exam: dict, tmp_path: Path) -> None:
    with pytest.raises(BratsInputError, match="the reference sequence t2 has no file"):
        prepare_exam({"t1c": raw_exam["files"]["t1c"]}, reference="t2")
    with pytest.raises(BratsInputError, match="unknown sequence 'dwi'"):
        prepare_exam({"dwi": raw_exam["files"]["t1c"]})
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(BratsInputError, match="exists and is not a prepared case folder"):
        prepare_exam({"t1c": BRAIN1 / "brain1_image.nii.gz"}, out_dir=other,
                     settings=PrepareSettings(brain_extraction="never"))
    assert (other / "notes.txt").read_text() == "mine"


def test_already_prepared_case_is_left_as_it_is(tmp_path: Path) -> None:
    """A BraTS case (skull-stripped, one 1 mm grid) given as plain files: nothing registered,
    resampled or extracted, nothing written; labels map back voxel for voxel."""
    folder = tmp_path / "exam"
    shutil.copytree(sample_case_path(), folder)
    files = {key: folder / f"{SAMPLE_CASE_ID}_{key}.nii.gz" for key in ("t1ce", "t1", "t2", "flair")}
    recorder = Recorder()
    exam = prepare_exam(files, reference="t1ce", convention="brats2021", progress=recorder)
    assert exam.steps == {"registration": "skipped: the sequences share the reference's grid",
                          "resampling": "skipped: already one 1 mm grid",
                          "brain extraction": "skipped: t1ce is skull-stripped already"}
    assert exam.folder is None and recorder.messages[-1].startswith("already prepared")
    assert not (folder / ".napari-acs").exists()
    loaded = load_case(folder)
    assert np.allclose(exam.case.image, loaded.image) and np.allclose(exam.case.affine, loaded.affine)
    assert (exam.labels_on_reference(loaded.label) == loaded.label).all()  # voxel-exact
    out = exam.save_on_reference(loaded.label, tmp_path / "seg.nii.gz")
    source = nib.load(files["t1ce"])
    assert np.allclose(nib.load(out).affine, source.affine)
    assert (np.asarray(nib.load(out).dataobj) == np.asarray(nib.load(folder / f"{SAMPLE_CASE_ID}_seg.nii.gz").dataobj)).all()


# ---------------------------------------------------------------------------- a real anisotropic scan


@pytest.fixture(scope="module")
def brain1(tmp_path_factory: pytest.TempPathFactory):
    """pyradiomics' brain1 (post-contrast T1 with skull, 0.78 x 0.78 x 6.5 mm) prepared as T1c."""
    folder = tmp_path_factory.mktemp("brain1")
    scan = folder / "scan.nii.gz"
    shutil.copy(BRAIN1 / "brain1_image.nii.gz", scan)
    return prepare_exam({"t1c": scan}), scan


def test_real_anisotropic_scan(brain1, tmp_path: Path) -> None:
    exam, scan = brain1
    source = load_volume(scan)
    assert source.shape == (256, 256, 25) and source.spacing == pytest.approx((0.78125, 0.78125, 6.5))
    assert exam.steps["registration"].startswith("skipped") and exam.steps["resampling"] == "done"
    assert exam.steps["brain extraction"] == "done"  # it has a skull: not skull-stripped
    assert exam.case.spacing == pytest.approx((1.0, 1.0, 1.0)) and exam.case.shape == (200, 200, 163)
    assert np.allclose(exam.grid.corners().min(0), Grid(source.shape, source.affine).corners().min(0), atol=1e-6)
    assert 900 < exam.brain_ml < 2000
    lesion = load_volume(BRAIN1 / "brain1_label.nii.gz")
    lesion_grid = reference_grid(lesion.source)
    on_1mm = labels_to_grid(lesion.data.astype(np.uint8), lesion_grid, exam.grid)
    ml_source = float(lesion.data.sum()) * np.prod(lesion.spacing) / 1000.0
    ml_1mm = float(on_1mm.sum()) / 1000.0
    print(f"brain1: brain {exam.brain_ml:.0f} mL; lesion {ml_source:.2f} mL at 0.78 x 0.78 x 6.5 mm, "
          f"{ml_1mm:.2f} mL at 1 mm; {100 * (on_1mm & exam.mask).sum() / on_1mm.sum():.1f}% inside the brain mask")
    assert ml_1mm == pytest.approx(ml_source, rel=0.10)
    assert (on_1mm & exam.mask).sum() >= 0.95 * on_1mm.sum()  # the lesion is inside the extracted brain
    # The lesion on the 1 mm grid, written back on the scan's own grid, is the lesion again.
    seg = tmp_path / "lesion_1mm.nii.gz"
    nib.save(nib.Nifti1Image(on_1mm, exam.case.affine), seg)
    back = np.asarray(nib.load(to_reference_grid(seg, exam.folder, tmp_path / "lesion_on_scan.nii.gz")).dataobj)
    original = np.asarray(nib.load(BRAIN1 / "brain1_label.nii.gz").dataobj) > 0
    dice = 2.0 * ((back > 0) & original).sum() / ((back > 0).sum() + original.sum())
    print(f"brain1: lesion round trip (scan -> 1 mm -> scan) Dice {dice:.4f}")
    assert dice > 0.9
    assert read_manifest(exam.folder)["steps"] == exam.steps


# ---------------------------------------------------------------------------- napari-acs prepare


def test_command_line_prepares_and_writes_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from napari_acs.cli import main

    sample = sample_case_path()
    flags = [arg for flag, key in (("--t1c", "t1ce"), ("--flair", "flair"), ("--t1", "t1"), ("--t2", "t2"))
             for arg in (flag, str(sample / f"{SAMPLE_CASE_ID}_{key}.nii.gz"))]
    out = tmp_path / "prepared"
    assert main(["prepare", *flags, "--convention", "brats2021", "--case-id", "case1", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"prepared case1 in {out}: 240 x 240 x 155 voxels of 1 mm" in printed
    assert "brain extraction: skipped: t1ce is skull-stripped already" in printed
    assert f"next: napari-acs segment {out} --out SEGDIR" in printed
    case, original = load_case(out), load_case(sample)  # what napari-acs segment FOLDER reads
    assert case.case_id == "case1" and np.allclose(case.image, original.image)
    back = tmp_path / "seg_on_t1ce.nii.gz"
    seg = sample / f"{SAMPLE_CASE_ID}_seg.nii.gz"
    assert main(["prepare", "--write-back", str(seg), "--prepared", str(out), "--out", str(back)]) == 0
    assert f"wrote {back} on the grid of {SAMPLE_CASE_ID}_t1ce.nii.gz" in capsys.readouterr().out
    assert (np.asarray(nib.load(back).dataobj) == np.asarray(nib.load(seg).dataobj)).all()  # voxel-exact
    assert np.allclose(nib.load(back).affine, nib.load(sample / f"{SAMPLE_CASE_ID}_t1ce.nii.gz").affine)
    for argv, message in (
        (["prepare", "--out", str(tmp_path / "x")], "no sequence given"),
        (["prepare", "--write-back", str(seg), "--out", str(back)], "--write-back needs --prepared FOLDER"),
        (["prepare", "--write-back", str(seg), "--prepared", str(tmp_path), "--out", str(tmp_path / "y.nii.gz")],
         f"{tmp_path}: write-back: not a prepared case folder"),
        (["prepare", "--write-back", str(seg), "--prepared", str(out), "--out", str(back)], "file exists"),
    ):
        assert main(argv) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith("napari-acs prepare: error: ") and message in error and "\n" not in error
