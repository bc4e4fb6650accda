"""A training cohort in memory: case discovery, the subject split, and cached network inputs.

Segmentation cases are kept as the z-scored brain crop that
:func:`napari_acs.inference.segment` also predicts on (float16 to halve memory) with
their label map; classification cases as the brain crop padded to a cube and resized
to the network's fixed input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_acs.inference.preprocess import BRAIN_MARGIN, classification_input, pad_to
from napari_acs.io import BratsInputError, brain_bbox, find_case_files, find_cases, load_case, zscore_in_mask
from napari_acs.progress import CancelSignal, check_cancel

#: At most this many tumour voxel positions are kept per case for centring patches.
MAX_TUMOUR_POINTS = 20_000


@dataclass(frozen=True)
class CohortCase:
    """A case folder found in the cohort: ``case_id``, ``folder`` and whether it has a ``seg`` file."""

    case_id: str
    folder: Path
    has_seg: bool


@dataclass(frozen=True, eq=False)
class SegmentationCase:
    """A cached segmentation case.

    ``image`` float16 (4, X, Y, Z) z-scored brain crop (zero-padded up to the patch
    size); ``labels`` uint8 (X, Y, Z) in ``convention``; ``tumour`` int32 (K, 3) voxel
    positions inside the whole tumour (a subsample); ``spacing`` mm.
    """

    case_id: str
    image: np.ndarray
    labels: np.ndarray
    convention: str
    spacing: tuple[float, float, float]
    tumour: np.ndarray


@dataclass(frozen=True, eq=False)
class ClassificationCase:
    """A cached classification case: ``image`` float16 (4, *size), ``label`` 0 or 1."""

    case_id: str
    image: np.ndarray
    label: int


def discover(cohort: str | Path) -> tuple[list[CohortCase], list[BratsInputError]]:
    """The cases of a cohort folder, sorted by folder, and the folders that are not usable
    cases (a missing or duplicate modality...: skipped, with the reason). Duplicate case ids
    are an error; so is a cohort without any case."""
    cases: list[CohortCase] = []
    rejected: list[BratsInputError] = []
    for folder in find_cases(cohort):
        try:
            files = find_case_files(folder)
        except BratsInputError as exc:
            rejected.append(exc)
            continue
        cases.append(CohortCase(files.case_id, folder, "seg" in files.files))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise BratsInputError(
                case.folder, f"case id {case.case_id} is also used by {seen[case.case_id]}: case ids must be unique"
            )
        seen[case.case_id] = case.folder
    return cases, rejected


def split_subjects(
    ids: Sequence[str], val_fraction: float, seed: int, strata: Sequence[int] | None = None
) -> tuple[list[str], list[str]]:
    """Deterministic ``(train_ids, val_ids)`` split by subject.

    ``round(val_fraction * n)`` subjects (at least 1 when ``val_fraction > 0``) go to
    validation, drawn with ``seed`` from the sorted ids; with ``strata`` (a label per
    id) each stratum contributes its own share, so both classes reach validation.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if val_fraction <= 0:
        return [ids[i] for i in order], []
    if len(ids) < 2:
        raise ValueError(f"a validation split needs at least 2 cases, the cohort has {len(ids)}")
    rng = np.random.default_rng(seed)
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(0 if strata is None else int(strata[i]), []).append(i)
    val: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        n_val = int(round(val_fraction * len(members)))
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += [members[j] for j in rng.permutation(len(members))[:n_val]]
    if not val:
        val = [order[int(rng.integers(len(order)))]]
    val_set = set(val)
    return [ids[i] for i in order if i not in val_set], [ids[i] for i in order if i in val_set]


def segmentation_case(folder: Path, patch_size: Sequence[int], seed: int = 0) -> SegmentationCase:
    """Load one case and cache it for segmentation training (see :class:`SegmentationCase`)."""
    case = load_case(folder)
    if case.label is None:
        raise BratsInputError(folder, "has no segmentation (seg) file, needed for training")
    box = brain_bbox(case.image, margin=BRAIN_MARGIN)
    image = pad_to(zscore_in_mask(case.image[(slice(None), *box)]).astype(np.float16), patch_size)
    labels = pad_to(case.label[box], patch_size)
    tumour = np.argwhere(labels > 0).astype(np.int32)
    if len(tumour) > MAX_TUMOUR_POINTS:
        tumour = tumour[np.random.default_rng(seed).choice(len(tumour), MAX_TUMOUR_POINTS, replace=False)]
    return SegmentationCase(case.case_id, image, labels, case.convention, case.spacing, tumour)


def classification_case(folder: Path, label: int, size: Sequence[int]) -> ClassificationCase:
    """Load one case and cache it for classification (see :class:`ClassificationCase`)."""
    case = load_case(folder)
    image = classification_input(case.image, size).astype(np.float16)
    return ClassificationCase(case.case_id, image, int(label))


def load_all(
    load: Callable[[CohortCase], object],
    cases: Sequence[CohortCase],
    *,
    progress: Callable[[float, str], None],
    cancel: CancelSignal = None,
) -> tuple[list, dict[str, str]]:
    """``[load(case) for case in cases]`` with a progress report and a cancel check per case.

    A case that cannot be loaded (``load`` raises :class:`BratsInputError`: unreadable file,
    NaN voxels, unknown labels...) is skipped: returns the loaded items, in order, and
    ``{case_id: the one-line reason}`` of the skipped cases.
    """
    out, skipped = [], {}
    for i, case in enumerate(cases):
        check_cancel(cancel, "loading the cohort")
        progress(i / max(len(cases), 1), f"loading case {i + 1}/{len(cases)} ({case.case_id})")
        try:
            out.append(load(case))
        except BratsInputError as exc:
            skipped[case.case_id] = str(exc)
    return out, skipped
