"""Segment a cohort: many cases in, one ``<case_id>_seg.nii.gz`` each plus ``volumes.csv``.

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

from napari_acs.inference.engine import Segmenter
from napari_acs.inference.plausibility import brain_volume_ml, volume_concerns
from napari_acs.io import BratsInputError, default_seg_name, find_case_files, find_cases, load_case, save_segmentation
from napari_acs.io.case import SEPARATORS
from napari_acs.io.files import atomic_write_text, remove_stale_temporaries, writable_folder
from napari_acs.metrics import volumes_ml
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report

VOLUMES_CSV = "volumes.csv"
RUN_JSON = "run.json"
LOCK_FILE = ".napari-acs.lock"


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
    earlier = _earlier_rows(table) if skip_existing else {}
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
                            "processes": world, **(run_info or {})}, indent=2),
                overwrite=True,
            )
        return _segment_all(paths[rank::world], out, table, engine, overwrite=overwrite,
                            skip_existing=skip_existing, earlier=earlier, progress=progress, cancel=cancel)


def _segment_all(paths: list[Path], out: Path, table: Path, engine: Segmenter, *, overwrite: bool,
                 skip_existing: bool, earlier: dict[str, dict], progress: ProgressCallback | None,
                 cancel: CancelSignal) -> list[CaseResult]:
    """The loop of :func:`segment_cases`: read ahead, compute, write behind, table after every case."""
    results: list[CaseResult] = []
    with ThreadPoolExecutor(1, "napari-acs read") as reader, ThreadPoolExecutor(1, "napari-acs write") as writer:
        loading = reader.submit(_load, paths[0], out, overwrite, skip_existing) if paths else None
        writing: Future | None = None
        for index, path in enumerate(paths):
            check_cancel(cancel, "segmentation")
            result = CaseResult(source=path)
            start = time.perf_counter()
            loaded, loading = loading.result(), None
            if index + 1 < len(paths):  # read the next case while this one computes
                loading = reader.submit(_load, paths[index + 1], out, overwrite, skip_existing)

            def case_progress(fraction: float, message: str, index: int = index) -> None:
                report(progress, (index + fraction) / len(paths), f"case {index + 1}/{len(paths)}: {message}")

            if isinstance(loaded, str):
                result.error = loaded
                case = None
            elif isinstance(loaded, _Kept):  # already segmented by an earlier run
                result = _existing_result(path, loaded, earlier)
                case = None
            else:
                case, target = loaded
                result.case_id = case.case_id
                result.warnings = list(case.warnings)
                try:
                    labels = engine.segment(case, progress=case_progress, cancel=cancel)
                except (ValueError, RuntimeError) as exc:  # this case only (e.g. too small for the network)
                    result.error = f"{path}: segmentation failed: {exc}"
                    case = None
            if writing is not None:  # at most one segmentation waits to be written
                _collect(writing, results, table, overwrite)
            result.seconds = time.perf_counter() - start
            if case is None:
                results.append(result)
                atomic_write_text(table, volumes_table(results), overwrite=True)
                writing = None
            else:
                writing = writer.submit(_write, result, labels, case, target, overwrite, start)
        if writing is not None:
            _collect(writing, results, table, overwrite)
    atomic_write_text(table, volumes_table(results), overwrite=True)
    report(progress, 1.0, f"{sum(r.error is None for r in results)}/{len(results)} cases segmented")
    return results


@dataclass(frozen=True)
class _Kept:
    """A case whose segmentation an earlier run wrote (``--skip-existing``)."""

    case_id: str
    convention: str
    output: Path


def _load(path: Path, out: Path, overwrite: bool, skip_existing: bool) -> tuple[Any, Path] | _Kept | str:
    """Reader thread: the case and its output path, the existing output to keep, or the
    one-line reason it cannot be segmented."""
    if skip_existing and not overwrite:
        try:
            files = find_case_files(path)
        except BratsInputError as exc:
            return str(exc)
        target = out / f"{files.case_id}{SEPARATORS[files.convention]}seg.nii.gz"
        if target.exists():
            return _Kept(files.case_id, files.convention, target)
    try:
        case = load_case(path, on_bad_label="warn")  # the reference is not needed to segment
    except BratsInputError as exc:
        return str(exc)
    target = out / default_seg_name(case)
    if target.exists() and not overwrite:
        return f"{target} exists; pass --overwrite to replace it, or --skip-existing to keep it"
    return case, target


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
    """A case kept from an earlier run: its earlier row, or volumes measured from its file."""
    row = earlier.get(kept.case_id)
    if row is not None and row.get("WT_ml"):
        volumes = {k: float(row[f"{k}_ml"]) for k in ("WT", "TC", "ET")}
    else:
        from napari_acs.io.nifti import open_nifti

        img, _ = open_nifti(kept.output)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        volumes = volumes_ml(np.asarray(img.dataobj), zooms, kept.convention)
    return CaseResult(source=path, case_id=kept.case_id, output=kept.output, volumes_ml=volumes, skipped=True)


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


def _write(result: CaseResult, labels, case, target: Path, overwrite: bool, start: float) -> CaseResult:
    """Writer thread: the segmentation on the source grid, and the case's volumes."""
    try:
        result.output = save_segmentation(labels, case, target, overwrite=overwrite)
        result.volumes_ml = volumes_ml(labels, case.spacing, case.convention)
        # an implausible result (a model painting the brain) is a warning of its case
        concerns = volume_concerns(result.volumes_ml, brain_volume_ml(case.image, case.spacing))
        result.warnings += [f"{case.case_id}: {concern.text}" for concern in concerns]
    except (BratsInputError, OSError) as exc:
        result.error = str(exc) if isinstance(exc, BratsInputError) else f"{target}: cannot write: {exc.strerror or exc}"
    result.seconds = time.perf_counter() - start
    return result


def _collect(writing: Future, results: list[CaseResult], table: Path, overwrite: bool) -> None:
    results.append(writing.result())
    atomic_write_text(table, volumes_table(results), overwrite=True)


def source_name(source: Path | Mapping) -> str:
    """A case input's name in a table: the file or folder name (the reference file's for assigned files)."""
    return Path(next(iter(source.values()))).name if isinstance(source, Mapping) else Path(source).name


def source_text(source: Path | Mapping) -> str | dict[str, str]:
    """A case input as JSON: its path, or ``{sequence: path}``."""
    return {k: str(v) for k, v in source.items()} if isinstance(source, Mapping) else str(source)


def volumes_table(results: Sequence[CaseResult]) -> str:
    """CSV text: case_id, file, WT/TC/ET volumes in mL, seconds, error, warning."""
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case_id", "segmentation", "WT_ml", "TC_ml", "ET_ml", "seconds", "error", "warning"])
    for r in results:
        v = r.volumes_ml
        writer.writerow([
            r.case_id or source_name(r.source), r.output.name if r.output else "",
            *(f"{v[k]:.3f}" if k in v else "" for k in ("WT", "TC", "ET")),
            f"{r.seconds:.2f}", r.error or "", " | ".join(r.warnings),
        ])
    return buffer.getvalue()
