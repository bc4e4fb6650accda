"""Segment a cohort: many cases in, one ``<case_id>_seg.nii.gz`` each plus ``volumes.csv``.

On request each case also gets its voxel uncertainty map (``<case_id>_uncertainty.nii.gz``,
float32 in [0, 1]) and its WT / TC / ET region probabilities (``<case_id>_probabilities.nii.gz``,
float32 ``(X, Y, Z, 3)``), both on the source grid like the segmentation, and the table a
``score`` column (review priority, higher: look first; see :mod:`napari_acs.inference.uncertainty`).
A bad case is reported and skipped; the others still run. Nothing existing is
overwritten unless asked; every file is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from napari_acs.inference.engine import CasePrediction, Segmenter
from napari_acs.inference.plausibility import brain_volume_ml, volume_concerns
from napari_acs.io import BratsInputError, find_case_files, find_cases, load_case, save_map, save_segmentation
from napari_acs.io.case import SEPARATORS
from napari_acs.io.files import atomic_write_text, remove_stale_temporaries, writable_folder
from napari_acs.metrics import volumes_ml
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report

VOLUMES_CSV = "volumes.csv"
RUN_JSON = "run.json"
LOCK_FILE = ".napari-acs.lock"
SEGMENTATION = "segmentation"
#: The maps written on request, by the :class:`~napari_acs.inference.engine.CasePrediction`
#: attribute that holds them: file name after ``<case_id>``.
MAP_SUFFIXES = {"uncertainty": "_uncertainty.nii.gz", "probabilities": "_probabilities.nii.gz"}


@dataclass
class CaseResult:
    """Outcome of one case: the file written and region volumes (mL), or the error."""

    source: Path | Mapping  # a case folder or file, or {sequence: file} of files assigned by the user
    case_id: str | None = None
    output: Path | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False  # kept from an earlier run (--skip-existing)
    warnings: list[str] = field(default_factory=list)  # e.g. a reference segmentation not used
    score: float | None = None  # review priority in [0, 1], higher: look first (with uncertainty)
    maps: dict[str, Path] = field(default_factory=dict)  # "uncertainty" / "probabilities" -> file written


def expand_inputs(inputs: Sequence[str | os.PathLike | Mapping]) -> list[Path | Mapping]:
    """Case folders/files, or cohort folders of case folders -> one path per case; a mapping
    ``{sequence: file}`` (files with any names, see :func:`napari_acs.io.load_case`) is one case."""
    cases: list[Path | Mapping] = []
    for item in inputs:
        if isinstance(item, Mapping):
            cases.append(item)
            continue
        path = Path(item)
        cases.extend(find_cases(path) if path.is_dir() else [path])
    return cases


def segment_cases(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: nn.Module | Segmenter,
    *,
    device: str = "auto",
    tta: bool = False,
    overwrite: bool = False,
    run_info: dict | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    shard: tuple[int, int] = (0, 1),
    table_name: str = VOLUMES_CSV,
    skip_existing: bool = False,
    uncertainty: bool = False,
    probabilities: bool = False,
) -> list[CaseResult]:
    """Segment every case of ``inputs`` into ``out_dir``; returns one result per case.

    ``model`` is a :class:`Segmenter` (used as it is) or a model, for which one engine
    is built (``device``, ``tta``) and used for every case. Reading the next case and
    writing the last segmentation run in two threads while the engine computes (one
    case read ahead, one being written: memory stays flat however many cases).
    ``table_name`` (``volumes.csv``) is rewritten, atomically, after every case, so
    an interrupted run keeps the rows of the cases it finished. ``shard=(rank, world)``
    takes every ``world``-th case from the ``rank``-th (see :mod:`napari_acs.inference.shard`).
    ``skip_existing`` keeps cases whose segmentation is already in ``out_dir`` (a run
    interrupted before): their rows come from the earlier table or the file itself.

    ``uncertainty`` also writes ``<case_id>_uncertainty.nii.gz`` (float32 ``(X, Y, Z)`` in
    [0, 1]: flip disagreement with ``tta``, else the entropy of the probabilities) and gives
    the table a ``score`` column (``CaseResult.score``, higher: review first; rows stay in
    input order); ``probabilities`` writes ``<case_id>_probabilities.nii.gz`` (float32
    ``(X, Y, Z, 3)``: WT, TC, ET). Both lie on the source grid like the segmentation and obey
    ``overwrite`` like it; with ``skip_existing`` a case is kept only when all its asked files
    exist, and one with only some of them is refused (``overwrite`` redoes it).

    Two cases with one id, inputs none of which is a BraTS case, an ``out_dir`` that cannot
    be written, or another command writing to it are refused before anything is written
    (:class:`OutputFolderBusy` for the last, :class:`~napari_acs.io.files.WriteError` for
    the OS's refusals). A problem with a case's reference segmentation (not needed here)
    is a warning of that case (``CaseResult.warnings``), not an error. Temporary files
    that killed runs left in ``out_dir`` are removed.
    """
    out = Path(out_dir)
    table = out / table_name
    if table.exists() and not (overwrite or skip_existing):
        raise FileExistsError(f"{table} exists; pass --overwrite to replace it, or --skip-existing to go on")
    paths = expand_inputs(inputs)
    if not paths:
        raise BratsInputError(Path(inputs[0]) if inputs else out, "no BraTS case found")
    _check_inputs(paths, out)
    # the merged table of an earlier run, and this process's own rows (under torchrun)
    earlier = {**_earlier_rows(out / VOLUMES_CSV), **_earlier_rows(table)} if skip_existing else {}
    maps = tuple(kind for kind, asked in (("uncertainty", uncertainty), ("probabilities", probabilities)) if asked)
    rank, world = shard
    writable_folder(out)
    with _output_lock(out, exclusive=world == 1):
        remove_stale_temporaries(out)  # left by a killed run (only those of processes now gone)
        engine = model if isinstance(model, Segmenter) else Segmenter(model, device=device, tta=tta)
        if rank == 0:
            atomic_write_text(
                out / RUN_JSON,
                json.dumps({"inputs": [source_text(p) for p in paths], "device": str(engine.device),
                            "tta": engine.tta, "model": getattr(engine.network, "create_kwargs", None),
                            "processes": world, **({"maps": list(maps)} if maps else {}), **(run_info or {})},
                           indent=2),
                overwrite=True,
            )
        return _segment_all(paths[rank::world], out, table, engine, overwrite=overwrite,
                            skip_existing=skip_existing, maps=maps, earlier=earlier, progress=progress,
                            cancel=cancel)


def _segment_all(paths: list[Path], out: Path, table: Path, engine: Segmenter, *, overwrite: bool,
                 skip_existing: bool, maps: tuple[str, ...], earlier: dict[str, dict],
                 progress: ProgressCallback | None, cancel: CancelSignal) -> list[CaseResult]:
    """The loop of :func:`segment_cases`: read ahead, compute, write behind, table after every case."""
    results: list[CaseResult] = []
    scored = "uncertainty" in maps

    def write_table() -> None:
        atomic_write_text(table, volumes_table(results, score=scored), overwrite=True)

    with ThreadPoolExecutor(1, "napari-acs read") as reader, ThreadPoolExecutor(1, "napari-acs write") as writer:
        loading = reader.submit(_load, paths[0], out, overwrite, skip_existing, maps) if paths else None
        writing: Future | None = None
        for index, path in enumerate(paths):
            check_cancel(cancel, "segmentation")
            result = CaseResult(source=path)
            start = time.perf_counter()
            loaded, loading = loading.result(), None
            if index + 1 < len(paths):  # read the next case while this one computes
                loading = reader.submit(_load, paths[index + 1], out, overwrite, skip_existing, maps)

            def case_progress(fraction: float, message: str, index: int = index) -> None:
                report(progress, (index + fraction) / len(paths), f"case {index + 1}/{len(paths)}: {message}")

            if isinstance(loaded, str):
                result.error = loaded
                case = None
            elif isinstance(loaded, _Kept):  # already segmented by an earlier run
                result = _existing_result(path, loaded, earlier)
                case = None
            else:
                case, targets = loaded
                result.case_id = case.case_id
                result.warnings = list(case.warnings)
                try:  # the maps are made from the prediction in the writer thread, only when asked
                    prediction = engine.predict_case(case, progress=case_progress, cancel=cancel)
                except (ValueError, RuntimeError) as exc:  # this case only (e.g. too small for the network)
                    result.error = f"{path}: segmentation failed: {exc}"
                    case = None
            if writing is not None:  # at most one segmentation waits to be written
                results.append(writing.result())
                write_table()
            result.seconds = time.perf_counter() - start
            if case is None:
                results.append(result)
                write_table()
                writing = None
            else:
                writing = writer.submit(_write, result, prediction, case, targets, overwrite, start)
        if writing is not None:
            results.append(writing.result())
    write_table()
    report(progress, 1.0, f"{sum(r.error is None for r in results)}/{len(results)} cases segmented")
    return results


@dataclass(frozen=True)
class _Kept:
    """A case whose segmentation an earlier run wrote (``--skip-existing``)."""

    case_id: str
    convention: str
    output: Path


def _targets(out: Path, case_id: str, convention: str, maps: tuple[str, ...]) -> dict[str, Path]:
    """A case's output files: ``segmentation`` first (BraTS's name), then the asked ``maps``."""
    targets = {SEGMENTATION: out / f"{case_id}{SEPARATORS[convention]}seg.nii.gz"}
    targets.update((kind, out / f"{case_id}{MAP_SUFFIXES[kind]}") for kind in maps)
    return targets


def _load(path: Path, out: Path, overwrite: bool, skip_existing: bool,
          maps: tuple[str, ...] = ()) -> tuple[Any, dict[str, Path]] | _Kept | str:
    """Reader thread: the case and its output paths, the existing outputs to keep, or the
    one-line reason it cannot be segmented."""
    if skip_existing and not overwrite:
        try:
            files = find_case_files(path)
        except BratsInputError as exc:
            return str(exc)
        targets = _targets(out, files.case_id, files.convention, maps)
        present = [p for p in targets.values() if p.exists()]
        if len(present) == len(targets):
            return _Kept(files.case_id, files.convention, targets[SEGMENTATION])
        if present:
            missing = next(p for p in targets.values() if not p.exists())
            return f"{present[0]} exists but {missing.name} does not; pass --overwrite to redo the case"
    try:
        case = load_case(path, on_bad_label="warn")  # the reference is not needed to segment
    except BratsInputError as exc:
        return str(exc)
    targets = _targets(out, case.case_id, case.convention, maps)
    existing = next((p for p in targets.values() if p.exists()), None)
    if existing is not None and not overwrite:
        return f"{existing} exists; pass --overwrite to replace it, or --skip-existing to keep it"
    return case, targets


def _check_inputs(paths: list[Path], out: Path) -> None:
    """Before anything is written: two inputs of one case id (one file written twice) are
    refused, and so are inputs none of which is a BraTS case (no empty ``out`` is made)."""
    seen: dict[str, Path] = {}
    rejected: list[BratsInputError] = []
    for path in paths:
        try:
            case_id = find_case_files(path).case_id
        except BratsInputError as exc:
            rejected.append(exc)  # reported as that case's error when its turn comes
            continue
        if case_id in seen:
            raise BratsInputError(path, f"case {case_id} is also given as {seen[case_id]}: "
                                        "one run segments each case id once")
        seen[case_id] = path
    if not seen:
        first = rejected[0]
        more = len(rejected) - 1
        others = f" (and {more} more input{'s' if more > 1 else ''} rejected)" if more else ""
        raise BratsInputError(first.path, f"{first.problem}{others}; no case to segment, nothing written to {out}")


def _earlier_rows(table: Path) -> dict[str, dict]:
    """The rows of an earlier run's table by case id (for cases kept by --skip-existing)."""
    if not table.is_file():
        return {}
    with open(table, newline="") as stream:
        return {row["case_id"]: row for row in csv.DictReader(stream) if not row.get("error")}


def _existing_result(path: Path, kept: _Kept, earlier: dict[str, dict]) -> CaseResult:
    """A case kept from an earlier run: its earlier row (volumes, score), or volumes measured from its file."""
    row = earlier.get(kept.case_id)
    score = float(row["score"]) if row is not None and row.get("score") else None
    if row is not None and row.get("WT_ml"):
        volumes = {k: float(row[f"{k}_ml"]) for k in ("WT", "TC", "ET")}
    else:
        from napari_acs.io.nifti import open_nifti

        img, _ = open_nifti(kept.output)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        volumes = volumes_ml(np.asarray(img.dataobj), zooms, kept.convention)
    return CaseResult(source=path, case_id=kept.case_id, output=kept.output, volumes_ml=volumes, skipped=True,
                      score=score)


class OutputFolderBusy(RuntimeError):
    """Another napari-acs command is writing to the same output folder."""


@contextlib.contextmanager
def _output_lock(out: Path, *, exclusive: bool):
    """Hold ``out/.napari-acs.lock`` while segmenting (released if the process dies).

    ``exclusive``: one command at a time; processes of one torchrun job share it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    with open(out / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderBusy(f"{out}: another napari-acs command is writing to this folder; "
                                   "wait for it to finish or choose another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(result: CaseResult, prediction: CasePrediction, case, targets: dict[str, Path], overwrite: bool,
           start: float) -> CaseResult:
    """Writer thread: the segmentation and the asked maps on the source grid, the case's volumes
    (and score, with the uncertainty map)."""
    target = targets[SEGMENTATION]
    labels = prediction.labels
    try:
        result.output = save_segmentation(labels, case, target, overwrite=overwrite)
        for kind, path in targets.items():
            if kind != SEGMENTATION:
                target = path  # the file an error names
                result.maps[kind] = save_map(getattr(prediction, kind), case, path, overwrite=overwrite)
        if "uncertainty" in targets:
            result.score = prediction.score
        result.volumes_ml = volumes_ml(labels, case.spacing, case.convention)
        # an implausible result (a model painting the brain) is a warning of its case
        concerns = volume_concerns(result.volumes_ml, brain_volume_ml(case.image, case.spacing))
        result.warnings += [f"{case.case_id}: {concern.text}" for concern in concerns]
    except (BratsInputError, OSError) as exc:
        result.error = str(exc) if isinstance(exc, BratsInputError) else f"{target}: cannot write: {exc.strerror or exc}"
    result.seconds = time.perf_counter() - start
    return result


def source_name(source: Path | Mapping) -> str:
    """A case input's name in a table: the file or folder name (the reference file's for assigned files)."""
    return Path(next(iter(source.values()))).name if isinstance(source, Mapping) else Path(source).name


def source_text(source: Path | Mapping) -> str | dict[str, str]:
    """A case input as JSON: its path, or ``{sequence: path}``."""
    return {k: str(v) for k, v in source.items()} if isinstance(source, Mapping) else str(source)


def volumes_table(results: Sequence[CaseResult], *, score: bool = False) -> str:
    """CSV text: case_id, file, WT/TC/ET volumes in mL, with ``score`` the case's review
    priority in [0, 1] (higher: look first; empty for a failed case), seconds, error, warning."""
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case_id", "segmentation", "WT_ml", "TC_ml", "ET_ml", *(["score"] if score else []),
                     "seconds", "error", "warning"])
    for r in results:
        v = r.volumes_ml
        scored = [f"{r.score:.4f}" if r.score is not None else ""] if score else []
        writer.writerow([
            r.case_id or source_name(r.source), r.output.name if r.output else "",
            *(f"{v[k]:.3f}" if k in v else "" for k in ("WT", "TC", "ET")), *scored,
            f"{r.seconds:.2f}", r.error or "", " | ".join(r.warnings),
        ])
    return buffer.getvalue()
