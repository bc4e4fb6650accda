"""A raw exam prepared the way BraTS prepares its cases: co-registered, 1 mm, skull-stripped.

:func:`prepare_exam` takes the sequences of one exam (files with any names, on any grids,
with or without a skull), reads each through the io validation path, rigidly co-registers
every sequence to the reference sequence (:mod:`.register`), resamples all onto a 1 mm
isotropic grid over the reference's field of view (:func:`.grid.isotropic_grid`), extracts
the brain (deepbet on the most T1-like sequence, :mod:`.brain`) and masks every sequence
with it. Steps that are not needed are skipped and say so in :attr:`PreparedExam.steps`:
sequences already on one grid are not registered; a reference already of 1 mm voxels is
not resampled; a skull-stripped reference is not brain-extracted.

The result, a :class:`PreparedExam`, holds a :class:`~napari_acs.io.BratsCase` on the
1 mm grid (what :class:`~napari_acs.inference.Segmenter` segments) and writes results back
on the reference file's own grid (:meth:`PreparedExam.save_on_reference`). It is cached
next to the reference file (:mod:`.cache`) and reused while the inputs are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from nibabel.orientations import io_orientation

from napari_acs.io.case import MODALITIES, SEG, BratsCase, SourceGeometry, assigned_case_files
from napari_acs.io.errors import BratsInputError
from napari_acs.io.labels import Convention
from napari_acs.io.sequences import SEQUENCES, canonical_sequence
from napari_acs.io.volume import NiftiVolume, load_volume
from napari_acs.prepare.brain import BrainNotFound, check_brain, extract_brain, looks_skull_stripped
from napari_acs.prepare.errors import PrepareError
from napari_acs.prepare.grid import Grid, gap_mm, isotropic_grid, overlap_fraction, resample, to_sitk
from napari_acs.prepare.register import Registration, RegistrationFailed, RegistrationSettings, register_rigid
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report

BrainExtraction = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class PrepareSettings:
    """What :func:`prepare_exam` does: ``spacing_mm`` of the output grid; ``brain_extraction``
    ``"auto"`` (unless the reference looks skull-stripped), ``"always"`` or ``"never"``;
    ``min_overlap`` the least fraction of a sequence's field of view inside the reference's;
    ``registration`` the rigid registration's settings."""

    spacing_mm: float = 1.0
    brain_extraction: BrainExtraction = "auto"
    min_overlap: float = 0.25
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PreparedExam:
    """A prepared exam: ``case`` (image float32 (4, X, Y, Z) on the 1 mm grid, RAS+, zero
    outside the brain and in missing sequences' channels), ``mask`` bool (X, Y, Z) the
    brain, ``reference`` the reference sequence (BraTS name of ``case.convention``),
    ``inputs`` the files read, ``reference_source`` the reference file's own grid,
    ``transforms`` per registered sequence (reference points -> that sequence's points, LPS
    mm), ``registrations`` their figures, ``steps`` what each step did (``"done"`` or
    ``"skipped: why"``), ``folder`` where the prepared case was written (``None``: nothing
    written), ``reused`` whether it was read from there unchanged, ``warnings``."""

    case: BratsCase
    mask: np.ndarray
    reference: str
    inputs: dict[str, Path]
    reference_source: SourceGeometry
    transforms: dict[str, sitk.Transform]
    registrations: dict[str, dict]
    steps: dict[str, str]
    folder: Path | None = None
    reused: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def grid(self) -> Grid:
        """The 1 mm grid of ``case``."""
        return Grid(self.case.shape, self.case.affine)

    @property
    def brain_ml(self) -> float:
        return float(self.mask.sum()) * self.case.voxel_volume_ml

    @property
    def steps_done(self) -> tuple[str, ...]:
        """The steps that were done (none: the inputs were one 1 mm, skull-stripped case already)."""
        return tuple(step for step, what in self.steps.items() if what == "done")

    def summary(self) -> list[str]:
        """What the preparation did, a line each: every step (``"registration: done"``), then
        each registration's figures (``"t2f -> t1c: rotation 3.1 deg, shift 2.4 mm, ..."``)."""
        lines = [f"{step}: {what}" for step, what in self.steps.items()]
        lines += [f"{kind} -> {self.reference}: rotation {figures['rotation_deg']:.1f} deg, shift "
                  f"{figures['shift_mm']:.1f} mm, mutual information {figures['metric']:.3f}"
                  for kind, figures in self.registrations.items()]
        return lines

    def labels_on_reference(self, labels: np.ndarray) -> np.ndarray:
        """Canonical labels (X, Y, Z) on the 1 mm grid -> canonical labels on the reference
        file's grid (nearest neighbour; exact when that grid is the 1 mm grid)."""
        from napari_acs.prepare.writeback import labels_to_grid, reference_grid

        return labels_to_grid(labels, self.grid, reference_grid(self.reference_source))

    def save_on_reference(self, labels: np.ndarray, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write canonical labels (X, Y, Z) on the 1 mm grid as a NIfTI on the reference file's
        grid, affine and header (:func:`napari_acs.io.save_segmentation`); returns the path."""
        from napari_acs.prepare.writeback import save_on_source

        return save_on_source(self.labels_on_reference(labels), self.reference_source, path,
                              case_id=self.case.case_id, convention=self.case.convention, overwrite=overwrite)


def prepare_exam(
    files: Mapping[str, str | os.PathLike],
    reference: str = "t1c",
    out_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    *,
    settings: PrepareSettings = PrepareSettings(),
    convention: Convention = "brats2023",
    case_id: str | None = None,
    cache: bool = True,
    device: str = "cpu",
) -> PreparedExam:
    """Prepare a raw exam ``files`` (``{"t1c": path, "flair": path, ...}``, any accepted
    sequence names, at least the ``reference``) as a BraTS-like case; see the module text.

    ``out_dir``: the folder to write the prepared case to (BraTS-named files, the brain
    mask, the transforms and ``prepare.json``, :mod:`.cache`); default (``cache=True``)
    ``<reference folder>/.napari-acs/prepared/<case_id>/``, where nothing is written when
    no step was needed, and a folder that cannot be written is a warning. A folder written
    earlier from the same, unchanged inputs and settings is read instead (``reused``).
    ``cache=False`` writes nothing. ``progress(fraction, message)``; ``cancel`` is checked
    between steps and during registration, and nothing is written when it is set
    (:class:`~napari_acs.progress.Cancelled`). ``device`` runs brain extraction (``"cpu"``
    or ``"auto"``).

    Raises :class:`~napari_acs.io.BratsInputError` for unreadable inputs, and
    :class:`~napari_acs.prepare.PrepareError` naming the file and the step: fields of view
    that do not overlap, a registration that does not fit, no brain found.
    """
    from napari_acs.prepare import cache as cache_mod

    case_files = assigned_case_files(files, convention=convention, case_id=case_id)
    inputs = {kind: path for kind, path in case_files.files.items() if kind != SEG}
    if SEG in case_files.files:
        raise PrepareError(case_files.files[SEG], "input", "prepare takes image sequences only, not a segmentation")
    ref_kind = _reference_kind(reference, inputs, convention)
    folder = Path(out_dir) if out_dir is not None else (
        cache_mod.default_folder(inputs[ref_kind], case_files.case_id) if cache else None)
    key = cache_mod.cache_key(inputs, ref_kind, convention, case_files.case_id, settings)
    if folder is not None and (cached := cache_mod.read_prepared(folder, key)) is not None:
        report(progress, 1.0, f"reusing the prepared case in {folder}")
        return cached
    exam = _prepare(inputs, ref_kind, case_files.case_id, convention, settings, progress, cancel, device)
    check_cancel(cancel, "preparation")
    if folder is None or (out_dir is None and not exam.steps_done):
        report(progress, 1.0, "prepared (nothing written)" if folder is None else
               "already prepared: one 1 mm grid, skull-stripped; nothing to do")
        return exam
    report(progress, 0.92, f"writing {folder}")
    try:
        exam = cache_mod.write_prepared(exam, folder, key, cancel=cancel)
    except OSError as exc:
        if out_dir is not None:
            raise
        exam = replace(exam, warnings=(*exam.warnings, f"the prepared case is not cached: {exc}"))
    report(progress, 1.0, f"prepared {exam.case.case_id}")
    return exam


def _reference_kind(reference: str, inputs: Mapping[str, Path], convention: Convention) -> str:
    try:
        kind = MODALITIES[convention][SEQUENCES.index(canonical_sequence(reference))]
    except ValueError as exc:
        raise BratsInputError(None, f"reference: {exc}") from None
    if kind not in inputs:
        raise BratsInputError(None, f"the reference sequence {reference} has no file (given: {', '.join(inputs)})")
    return kind


def _prepare(inputs: dict[str, Path], ref_kind: str, case_id: str, convention: Convention,
             settings: PrepareSettings, progress: ProgressCallback | None, cancel: CancelSignal,
             device: str) -> PreparedExam:
    volumes = _read(inputs, progress, cancel)
    grids = {kind: Grid(volume.shape, volume.affine) for kind, volume in volumes.items()}
    _check_overlap(volumes, grids, ref_kind, settings.min_overlap)
    target = isotropic_grid(grids[ref_kind], settings.spacing_mm)
    one_grid = all(grid.same_as(grids[ref_kind]) for grid in grids.values())
    steps = {
        "registration": "done" if not one_grid else "skipped: the sequences share the reference's grid",
        "resampling": "done" if not (one_grid and target is grids[ref_kind])
        else f"skipped: already one {settings.spacing_mm:g} mm grid",
    }
    registrations = {} if one_grid else _register(volumes, grids, ref_kind, settings, progress, cancel)
    report(progress, 0.65, f"resampling to {settings.spacing_mm:g} mm")
    arrays = {kind: _on_target(volumes[kind], grids[kind], target, registrations.get(kind)) for kind in volumes}
    check_cancel(cancel, "preparation")
    mask, steps["brain extraction"] = _brain(arrays, volumes, ref_kind, MODALITIES[convention], target, settings, progress, device)
    image = np.zeros((4, *target.shape), dtype=np.float32)
    for channel, kind in enumerate(MODALITIES[convention]):
        if kind in arrays:
            np.multiply(arrays[kind], mask, out=image[channel])
    case = BratsCase(image=image, modalities=MODALITIES[convention], affine=target.affine, case_id=case_id,
                     convention=convention, files=dict(inputs), source=grid_geometry(target),
                     missing=tuple(m for m in MODALITIES[convention] if m not in inputs))
    return PreparedExam(
        case=case, mask=mask, reference=ref_kind, inputs=dict(inputs),
        reference_source=volumes[ref_kind].source,
        transforms={kind: r.transform for kind, r in registrations.items()},
        registrations={kind: r.summary() for kind, r in registrations.items()}, steps=steps,
    )


def grid_geometry(grid: Grid) -> SourceGeometry:
    """The :class:`~napari_acs.io.SourceGeometry` of arrays on ``grid`` (written as they are)."""
    return SourceGeometry(affine=grid.affine.copy(), shape=grid.shape, header=grid.header(),
                          ornt=io_orientation(grid.affine))


def _read(inputs: dict[str, Path], progress: ProgressCallback | None, cancel: CancelSignal) -> dict[str, NiftiVolume]:
    volumes = {}
    for number, (kind, path) in enumerate(inputs.items()):
        check_cancel(cancel, "preparation")
        report(progress, 0.1 * number / len(inputs), f"reading {kind} ({path.name})")
        volume = load_volume(path)
        if volume.volumes > 1:
            raise PrepareError(path, "input", f"is 4D ({volume.volumes} volumes): give one 3D volume per sequence")
        volumes[kind] = volume
    return volumes


def _check_overlap(volumes: dict[str, NiftiVolume], grids: dict[str, Grid], ref_kind: str, least: float) -> None:
    """Each field of view must overlap the reference's (scanner coordinates, before registration)."""
    ref_name = volumes[ref_kind].path.name
    for kind, grid in grids.items():
        fraction = overlap_fraction(grid, grids[ref_kind])
        if fraction <= 0:
            raise PrepareError(volumes[kind].path, "field of view",
                               f"does not overlap the reference {ref_kind} ({ref_name}): "
                               f"{gap_mm(grid, grids[ref_kind]):.0f} mm apart; a scan of another exam?")
        if fraction < least:
            raise PrepareError(volumes[kind].path, "field of view",
                               f"only {100 * fraction:.0f}% of it overlaps the reference {ref_kind} ({ref_name}); "
                               f"at least {100 * least:.0f}% is needed")


def _register(volumes: dict[str, NiftiVolume], grids: dict[str, Grid], ref_kind: str, settings: PrepareSettings,
              progress: ProgressCallback | None, cancel: CancelSignal) -> dict[str, Registration]:
    """Every sequence but the reference registered rigidly to it (progress 0.1 - 0.6)."""
    fixed = to_sitk(volumes[ref_kind].data, grids[ref_kind])
    others = [kind for kind in volumes if kind != ref_kind]
    results = {}
    for number, kind in enumerate(others):
        check_cancel(cancel, "preparation")
        low, span = 0.1 + 0.5 * number / len(others), 0.5 / len(others)
        report(progress, low, f"registering {kind} to {ref_kind}")

        def step(fraction: float, message: str, low: float = low, span: float = span, kind: str = kind) -> None:
            report(progress, low + span * fraction, f"registering {kind} to {ref_kind}: {message}")

        try:
            results[kind] = register_rigid(fixed, to_sitk(volumes[kind].data, grids[kind]), settings.registration,
                                           progress=step, cancel=cancel)
        except RegistrationFailed as exc:
            raise PrepareError(volumes[kind].path, f"registration to {ref_kind}", str(exc)) from None
    return results


def _on_target(volume: NiftiVolume, grid: Grid, target: Grid, registration: Registration | None) -> np.ndarray:
    """A sequence on the target grid (linear interpolation; the array itself when already there)."""
    if registration is None and grid.same_as(target):
        return volume.data
    transform = registration.transform if registration is not None else None
    return resample(to_sitk(volume.data, grid), target, transform)


def _brain(arrays: dict[str, np.ndarray], volumes: dict[str, NiftiVolume], ref_kind: str, modalities: tuple[str, ...],
           target: Grid, settings: PrepareSettings, progress: ProgressCallback | None, device: str) -> tuple[np.ndarray, str]:
    """The brain mask on the target grid and what the step did."""
    voxel_ml = float(np.prod(target.spacing)) / 1000.0
    mode = settings.brain_extraction
    reference = arrays[ref_kind]
    if mode == "never" or (mode == "auto" and looks_skull_stripped(volumes[ref_kind].data, _voxel_ml(volumes[ref_kind]))):
        why = "brain extraction off" if mode == "never" else f"{ref_kind} is skull-stripped already"
        mask = reference != 0
        try:
            check_brain(reference, mask, voxel_ml)
        except BrainNotFound as exc:
            raise PrepareError(volumes[ref_kind].path, "brain", f"{exc} ({why})") from None
        return mask, f"skipped: {why}"
    kind = next(k for k in modalities if k in arrays)  # channel order: T1, T1c, T2, FLAIR (most T1-like first)
    report(progress, 0.7, f"extracting the brain (deepbet on {kind})")
    try:
        mask = extract_brain(arrays[kind], voxel_ml, device=device)
    except BrainNotFound as exc:
        raise PrepareError(volumes[kind].path, "brain extraction", f"{exc} (deepbet on {kind})") from None
    report(progress, 0.9, f"brain: {mask.sum() * voxel_ml:.0f} mL")
    return mask, "done"


def _voxel_ml(volume: NiftiVolume) -> float:
    return float(np.prod(volume.spacing)) / 1000.0
