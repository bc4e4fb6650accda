"""Synthetic cases as BraTS files: one case folder, a cohort of them, the MGMT labels CSV."""

from __future__ import annotations

import csv
import gzip
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_acs.io.case import MODALITIES, SEG, SEPARATORS
from napari_acs.io.files import atomic_folder, atomic_path, refuse_existing, remove_stale_temporaries
from napari_acs.io.labels import get_convention
from napari_acs.synthetic.phantom import BRATS_SHAPE, synthesize

#: gzip level of the written files: fast, and the zero background compresses anyway.
GZIP_LEVEL = 1


def case_file_names(case_id: str, convention: str = "brats2021") -> dict[str, str]:
    """File name of each modality and ``"seg"`` of a case, keyed by the convention's names."""
    conv = get_convention(convention).name
    kinds = (*MODALITIES[conv], SEG)
    return {kind: f"{case_id}{SEPARATORS[conv]}{kind}.nii.gz" for kind in kinds}


def make_case(
    case_id: str,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    convention: str = "brats2021",
    shape: tuple[int, int, int] = BRATS_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    mgmt: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one synthetic case folder ``<out_dir>/<case_id>/`` and return it.

    Files are named like BraTS 2021 (``<id>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``,
    ``_seg``) or 2023 (``<id>-t1n``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``): int16 images,
    uint8 labels in that convention, BraTS geometry. The folder appears complete or not
    at all (written aside, then renamed). An existing folder raises
    :class:`FileExistsError` unless ``overwrite``. See :func:`synthesize` for the rest.
    """
    out_dir = Path(out_dir)
    target = out_dir / case_id
    refuse_existing(target, overwrite)
    case = synthesize(seed, shape=shape, spacing=spacing, convention=convention, mgmt=mgmt)
    names = case_file_names(case_id, convention)
    named = zip(MODALITIES[case.convention], MODALITIES["brats2021"])
    volumes = {**{name: case.images[modality] for name, modality in named}, SEG: case.seg}
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # case folders half-written by a killed run
    # zlib releases the GIL: the five files compress in parallel.
    with atomic_folder(target, overwrite=overwrite) as folder, ThreadPoolExecutor(len(names)) as pool:
        for write in [pool.submit(_write_nifti, volumes[k], case.affine, folder / n) for k, n in names.items()]:
            write.result()
    return target


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """gzip NIfTI-1 with qform = sform = ``affine`` (code 1, scanner), mm units; reproducible bytes."""
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0))


# --------------------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class CohortMember:
    """One case of a generated cohort: folder name, generator seed, MGMT label, RSNA id."""

    case_id: str
    seed: int
    mgmt: int
    rsna_id: str


def cohort_members(n: int, *, seed: int = 0, convention: str = "brats2021") -> list[CohortMember]:
    """The first ``n`` cases of the cohort ``seed`` (case ``i`` is the same for every ``n > i``).

    Names follow BraTS (``BraTS2021_00000`` or ``BraTS-GLI-00000-000``); the RSNA id is
    the zero-padded number. MGMT labels are balanced: cases 2k and 2k+1 get one 0 and
    one 1, in an order drawn from the seed.
    """
    if n < 1:
        raise ValueError(f"a cohort needs at least one case, got n={n}")
    conv = get_convention(convention).name
    members = []
    for index in range(n):
        pair_order = np.random.default_rng([seed, index // 2, 1]).integers(0, 2)
        case_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        rsna_id = f"{index:05d}"
        case_id = f"BraTS2021_{rsna_id}" if conv == "brats2021" else f"BraTS-GLI-{rsna_id}-000"
        members.append(CohortMember(case_id, case_seed, int((index + pair_order) % 2), rsna_id))
    return members


def write_mgmt_csv(members: list[CohortMember], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """RSNA-MICCAI 2021 style labels ``BraTS21ID,MGMT_value`` (ids zero-padded to 5), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["BraTS21ID", "MGMT_value"])
        writer.writerows([member.rsna_id, member.mgmt] for member in members)
    return path


def make_cohort(
    out_dir: str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    convention: str = "brats2021",
    mgmt_csv: bool = True,
    overwrite: bool = False,
    progress: Callable[[float, str], None] | None = None,
    workers: int | None = None,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    spacing: tuple[float, float, float] | None = None,
) -> list[Path]:
    """Write ``n`` synthetic cases into ``out_dir`` (plus ``train_labels.csv`` if ``mgmt_csv``).

    Cases are made in ``workers`` processes (default: one per CPU, at most 4; started
    with ``spawn``, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard, or ``workers=1``); ``progress(fraction,
    message)`` is called after each case. ``shape``/``spacing`` as in :func:`synthesize`. Nothing is written if a
    case folder or the CSV already exists and ``overwrite`` is false
    (:class:`FileExistsError` naming it). Returns the case folders in cohort order.
    """
    out_dir = Path(out_dir)
    members = cohort_members(n, seed=seed, convention=convention)
    csv_path = out_dir / "train_labels.csv"
    for path in [out_dir / m.case_id for m in members] + ([csv_path] if mgmt_csv else []):
        refuse_existing(path, overwrite)
    workers = min(n, workers or min(os.cpu_count() or 1, 4))
    options = {"convention": convention, "overwrite": overwrite, "shape": shape, "spacing": spacing}
    jobs = [(m.case_id, m.seed, out_dir, {**options, "mgmt": m.mgmt}) for m in members]
    paths: dict[str, Path] = {}

    def done(path: Path) -> None:
        paths[path.name] = path
        if progress is not None:
            progress(len(paths) / n, f"made {path.name} ({len(paths)}/{n})")

    if workers == 1:
        for job in jobs:
            done(_make_case_job(job))
    else:
        # spawn: safe under a GUI's threads; each worker reads the template once.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_make_case_job, job) for job in jobs]):
                done(future.result())
    if mgmt_csv:
        write_mgmt_csv(members, csv_path, overwrite=overwrite)
    return [paths[m.case_id] for m in members]


def _make_case_job(job: tuple[str, int, Path, dict]) -> Path:
    case_id, seed, out_dir, options = job
    return make_case(case_id, seed, out_dir, **options)
