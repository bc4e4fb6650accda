"""A cohort under review: its cases, what the model predicted, how unsure it was, what the reader accepted.

:class:`ReviewCohort` is the state behind the napari Cohort browser and the same state
from Python. Cases are discovered from file names only (no volume is read until a case
is shown or segmented), so a folder of a few hundred cases opens at once. Everything
napari-acs writes goes under ``<cohort>/.napari-acs/`` (see
:mod:`napari_acs.review.manifest`), never into a case folder, and a reference
segmentation that came with a case is never replaced:

- ``predictions/<id>_pred.nii.gz``: the model's labels, on the case's source grid;
- ``uncertainty/<id>_uncertainty.nii.gz``: the voxel uncertainty map (float32, [0, 1]);
- ``corrections/<id>/``: the accepted (corrected) labels as ``<id>_seg.nii.gz`` beside
  links to the case's images, so the folder is a case folder fine-tuning can read.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_acs.io import BratsInputError, default_seg_name, find_case_files, find_cases, load_case
from napari_acs.io.case import BratsCase
from napari_acs.io.labels import unknown_label_values
from napari_acs.io.writer import save_map, save_segmentation
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report
from napari_acs.review.manifest import STATE_FOLDER, STATUSES, Manifest

PREDICTIONS, UNCERTAINTY, CORRECTIONS = "predictions", "uncertainty", "corrections"


@dataclass(frozen=True)
class CaseEntry:
    """One row of the review table.

    Attributes:
        case_id, folder: the case and its folder.
        status: ``"new"``, ``"segmented"``, ``"reviewed"`` (accepted unchanged) or
            ``"corrected"`` (accepted with edits).
        volumes_ml: WT / TC / ET volumes of the prediction, mL.
        score: review priority in [0, 1] (higher: look first), ``None`` before segmenting.
        dice: WT / TC / ET Dice of the prediction against the case's own reference, if any.
        has_reference: the case came with a segmentation.
        record: the manifest record (files, model, times, provenance of a correction).
    """

    case_id: str
    folder: Path
    status: str = "new"
    volumes_ml: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    dice: dict[str, float] | None = None
    has_reference: bool = False
    record: dict = field(default_factory=dict)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class ReviewCohort:
    """The cases of a cohort folder and their review state (``<folder>/.napari-acs/review.json``).

    Raises :class:`~napari_acs.io.BratsInputError` when the folder holds no case.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.state = self.folder / STATE_FOLDER
        self.manifest = Manifest(self.folder)
        self._folders: dict[str, Path] = {}
        self._references: dict[str, bool] = {}
        for case_folder in find_cases(self.folder):  # hidden folders (ours) are skipped
            try:
                files = find_case_files(case_folder)
            except BratsInputError:
                continue  # reported when the case is opened
            self._folders.setdefault(files.case_id, case_folder)
            self._references[files.case_id] = "seg" in files.files

    # ------------------------------------------------------------------ reading
    @property
    def case_ids(self) -> list[str]:
        """Case ids in folder order."""
        return list(self._folders)

    def entries(self) -> list[CaseEntry]:
        """Every case's row, in folder order (one read of the manifest)."""
        records = self.manifest.read()
        return [self._entry(case_id, records.get(case_id, {})) for case_id in self._folders]

    def entry(self, case_id: str) -> CaseEntry:
        return self._entry(case_id, self.manifest.read().get(self._known(case_id), {}))

    def review_order(self) -> list[str]:
        """Case ids, most uncertain first; cases not yet segmented last, in folder order."""
        entries = self.entries()
        return [e.case_id for e in sorted(entries, key=lambda e: (e.score is None, -(e.score or 0.0)))]

    def load(self, case_id: str) -> BratsCase:
        """The case's volumes (a reference that cannot be used is left out with a warning)."""
        return load_case(self._folders[self._known(case_id)], on_bad_label="warn")

    def prediction(self, case_id: str, case: BratsCase | None = None) -> np.ndarray | None:
        """The saved prediction on the case's canonical grid, or None."""
        return self._read_labels(case_id, "prediction", case)

    def accepted(self, case_id: str, case: BratsCase | None = None) -> np.ndarray | None:
        """The accepted (corrected) labels on the case's canonical grid, or None."""
        return self._read_labels(case_id, "correction", case)

    def uncertainty(self, case_id: str, case: BratsCase | None = None) -> np.ndarray | None:
        """The saved voxel uncertainty map on the case's canonical grid, or None."""
        import nibabel as nib

        name = self.manifest.read().get(self._known(case_id), {}).get("uncertainty")
        if not name:
            return None
        case = case or self.load(case_id)
        return np.asarray(case.source.to_canonical(np.asarray(nib.load(self.state / name).dataobj)), np.float32)

    # ------------------------------------------------------------------ changing
    def segment(self, case_id: str, engine, *, model: str | None = None, progress: ProgressCallback | None = None,
                cancel: CancelSignal = None, case: BratsCase | None = None) -> CaseEntry:
        """Segment one case with ``engine`` (a :class:`~napari_acs.inference.Segmenter`), save the
        prediction and its uncertainty map, record volumes, score and Dice (against the case's
        reference) and ``model`` (what to call the model, e.g. its checkpoint; default its preset).
        A case already reviewed or corrected keeps that status and its accepted labels."""
        from napari_acs.metrics import brats_metrics, volumes_ml

        case_id = self._known(case_id)
        case = case or self.load(case_id)
        predicted = engine.predict_case(case, progress=progress, cancel=cancel)
        check_cancel(cancel, "segmentation")
        prediction_name = f"{PREDICTIONS}/{case_id}_pred.nii.gz"
        uncertainty_name = f"{UNCERTAINTY}/{case_id}_uncertainty.nii.gz"
        for name in (prediction_name, uncertainty_name):
            (self.state / name).parent.mkdir(parents=True, exist_ok=True)
        save_segmentation(predicted.labels, case, self.state / prediction_name, overwrite=True)
        save_map(predicted.uncertainty, case, self.state / uncertainty_name, overwrite=True)
        dice = None
        if case.label is not None:
            metrics = brats_metrics(predicted.labels, case.label, case.spacing, case.convention, challenge=None)
            dice = {region: round(values["dice"], 4) for region, values in metrics.items()}
        volumes = {k: round(v, 3) for k, v in volumes_ml(predicted.labels, case.spacing, case.convention).items()}
        if model is None:
            kwargs = getattr(engine.network, "create_kwargs", {})
            model = f"{kwargs.get('name', type(engine.network).__name__)} ({kwargs.get('conv', '?')})"

        def change(record: dict) -> None:
            record.update(prediction=prediction_name, uncertainty=uncertainty_name, score=round(predicted.score, 4),
                          volumes_ml=volumes, dice=dice, model=str(model), tta=predicted.flips > 1,
                          segmented_at=_now())
            if record.get("status") not in ("reviewed", "corrected"):
                record["status"] = "segmented"

        return self._entry(case_id, self.manifest.update(case_id, change))

    def segment_all(self, engine, *, model: str | None = None, progress: ProgressCallback | None = None,
                    cancel: CancelSignal = None, redo: bool = False,
                    on_case: Callable[[CaseEntry], None] | None = None) -> list[CaseEntry]:
        """Segment every case not segmented yet (all with ``redo``), in folder order; a case that
        cannot be read is reported through ``progress`` and skipped. ``on_case`` is called after
        each case (the browser updates its row)."""
        todo = [e.case_id for e in self.entries() if redo or e.status == "new"]
        done = []
        for index, case_id in enumerate(todo):
            check_cancel(cancel, "segmentation")

            def within(fraction: float, message: str, index: int = index) -> None:
                report(progress, (index + fraction) / len(todo), f"{index + 1}/{len(todo)} {message}")

            try:
                entry = self.segment(case_id, engine, model=model, progress=within, cancel=cancel)
            except BratsInputError as exc:
                report(progress, (index + 1) / len(todo), f"skipped {case_id}: {exc}")
                continue
            done.append(entry)
            if on_case is not None:
                on_case(entry)
        report(progress, 1.0, f"{len(done)}/{len(todo)} cases segmented")
        return done

    def accept(self, case_id: str, labels: np.ndarray, *, model: str | None = None,
               case: BratsCase | None = None) -> CaseEntry:
        """Store ``labels`` (canonical, the case's convention) as the case's training label.

        The status becomes ``"corrected"`` when they differ from the saved prediction (or
        there is none: the reader's own labels), ``"reviewed"`` when they do not; the manifest records when, the model and how many
        voxels changed. The case's own reference segmentation is never touched. Labels with
        another shape or values outside the case's convention are refused
        (:class:`~napari_acs.io.BratsInputError` naming the case); nothing is written then.
        """
        case_id = self._known(case_id)
        case = case or self.load(case_id)
        labels = np.asarray(labels)
        if labels.shape != case.shape:
            raise BratsInputError(self._folders[case_id], f"corrected labels of case {case_id} have shape "
                                  f"{labels.shape}, the case {case.shape}; nothing was saved")
        unknown = unknown_label_values(labels, case.convention)
        if unknown:
            raise BratsInputError(self._folders[case_id], f"corrected labels of case {case_id} hold values "
                                  f"{unknown[:10]} outside its {case.convention} convention; nothing was saved")
        labels = labels.astype(np.uint8)
        predicted = self.prediction(case_id, case)
        changed = int(np.count_nonzero(labels != predicted)) if predicted is not None else int(np.count_nonzero(labels))
        folder = self.state / CORRECTIONS / case_id
        folder.mkdir(parents=True, exist_ok=True)
        for kind, path in case.files.items():  # the images beside the label: a case folder to train on
            if kind != "seg":
                link = folder / Path(path).name
                if not link.exists():
                    os.symlink(Path(path).resolve(), link)
        name = f"{CORRECTIONS}/{case_id}/{default_seg_name(case)}"
        save_segmentation(labels, case, self.state / name, overwrite=True)

        def change(record: dict) -> None:
            record.update(correction=name, status="corrected" if changed or predicted is None else "reviewed",
                          corrected_voxels=changed, accepted_at=_now(),
                          accepted_model=model or record.get("model"))

        return self._entry(case_id, self.manifest.update(case_id, change))

    def training_folder(self, *, include_references: bool = False) -> Path:
        """A folder of case folders to fine-tune on: every accepted case (and, with
        ``include_references``, the cases that came with a reference and were not corrected,
        linked in). Raises ``ValueError`` when there is none."""
        corrections = self.state / CORRECTIONS
        accepted = {e.case_id for e in self.entries() if e.record.get("correction")}
        if include_references:
            for case_id, has_reference in self._references.items():
                if has_reference and case_id not in accepted:
                    link = corrections / case_id
                    if not link.exists():
                        corrections.mkdir(parents=True, exist_ok=True)
                        os.symlink(self._folders[case_id].resolve(), link, target_is_directory=True)
                    accepted.add(case_id)
        if not accepted:
            raise ValueError(f"{self.folder}: no accepted (corrected or reviewed) case to fine-tune on yet")
        for stale in corrections.iterdir():  # reference links of an earlier call that wanted them
            if stale.is_symlink() and stale.name not in accepted:
                stale.unlink()
        return corrections

    # ------------------------------------------------------------------ helpers
    def _known(self, case_id: str) -> str:
        if case_id not in self._folders:
            raise KeyError(f"{self.folder}: no case {case_id!r}")
        return case_id

    def _entry(self, case_id: str, record: dict) -> CaseEntry:
        status = record.get("status", "new")
        return CaseEntry(case_id, self._folders[case_id], status if status in STATUSES else "new",
                         dict(record.get("volumes_ml") or {}), record.get("score"), record.get("dice"),
                         self._references.get(case_id, False), record)

    def _read_labels(self, case_id: str, key: str, case: BratsCase | None) -> np.ndarray | None:
        from napari_acs.io.segmentation import read_segmentation

        name = self.manifest.read().get(self._known(case_id), {}).get(key)
        if not name:
            return None
        return read_segmentation(self.state / name, case or self.load(case_id))
