"""Segment a cohort: many cases in, one ``<case_id>_seg.nii.gz`` each plus ``volumes.csv``.

A bad case is reported and skipped; the others still run. Nothing existing is
overwritten unless asked; every file is written atomically.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from napari_acs.inference.engine import Segmenter
from napari_acs.io import BratsInputError, default_seg_name, find_cases, load_case, save_segmentation
from napari_acs.io.files import atomic_write_text
from napari_acs.metrics import volumes_ml
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report

VOLUMES_CSV = "volumes.csv"
RUN_JSON = "run.json"


@dataclass
class CaseResult:
    """Outcome of one case: the file written and region volumes (mL), or the error."""

    source: Path
    case_id: str | None = None
    output: Path | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Case folders/files, or cohort folders of case folders -> one path per case."""
    cases: list[Path] = []
    for item in inputs:
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
) -> list[CaseResult]:
    """Segment every case of ``inputs`` into ``out_dir``; returns one result per case.

    ``model`` is a :class:`Segmenter` (used as it is) or a model, for which one engine
    is built (``device``, ``tta``) and used for every case. Reading the next case and
    writing the last segmentation run in two threads while the engine computes (one
    case read ahead, one being written: memory stays flat however many cases).
    ``table_name`` (``volumes.csv``) is rewritten, atomically, after every case, so
    an interrupted run keeps the rows of the cases it finished. ``shard=(rank, world)``
    takes every ``world``-th case from the ``rank``-th (see :mod:`napari_acs.inference.shard`).
    """
    out = Path(out_dir)
    table = out / table_name
    if table.exists() and not overwrite:
        raise FileExistsError(f"{table} exists; pass overwrite=True (--overwrite) to replace it")
    paths = expand_inputs(inputs)
    if not paths:
        raise BratsInputError(Path(inputs[0]) if inputs else out, "no BraTS case found")
    rank, world = shard
    paths = paths[rank::world]
    out.mkdir(parents=True, exist_ok=True)
    engine = model if isinstance(model, Segmenter) else Segmenter(model, device=device, tta=tta)
    if rank == 0:
        atomic_write_text(
            out / RUN_JSON,
            json.dumps({"inputs": [str(p) for p in expand_inputs(inputs)], "device": str(engine.device),
                        "tta": engine.tta, "model": getattr(engine.network, "create_kwargs", None),
                        "processes": world, **(run_info or {})}, indent=2),
            overwrite=True,
        )
    results: list[CaseResult] = []
    with ThreadPoolExecutor(1, "napari-acs read") as reader, ThreadPoolExecutor(1, "napari-acs write") as writer:
        loading = reader.submit(_load, paths[0], out, overwrite) if paths else None
        writing: Future | None = None
        for index, path in enumerate(paths):
            check_cancel(cancel, "segmentation")
            result = CaseResult(source=path)
            start = time.perf_counter()
            loaded, loading = loading.result(), None
            if index + 1 < len(paths):  # read the next case while this one computes
                loading = reader.submit(_load, paths[index + 1], out, overwrite)

            def case_progress(fraction: float, message: str, index: int = index) -> None:
                report(progress, (index + fraction) / len(paths), f"case {index + 1}/{len(paths)}: {message}")

            if isinstance(loaded, str):
                result.error = loaded
                case = None
            else:
                case, target = loaded
                result.case_id = case.case_id
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


def _load(path: Path, out: Path, overwrite: bool) -> tuple[Any, Path] | str:
    """Reader thread: the case and its output path, or the one-line reason it cannot be segmented."""
    try:
        case = load_case(path)
    except BratsInputError as exc:
        return str(exc)
    target = out / default_seg_name(case)
    if target.exists() and not overwrite:
        return f"{target} exists; pass --overwrite to replace it"
    return case, target


def _write(result: CaseResult, labels, case, target: Path, overwrite: bool, start: float) -> CaseResult:
    """Writer thread: the segmentation on the source grid, and the case's volumes."""
    try:
        result.output = save_segmentation(labels, case, target, overwrite=overwrite)
        result.volumes_ml = volumes_ml(labels, case.spacing, case.convention)
    except (BratsInputError, OSError) as exc:
        result.error = str(exc) if isinstance(exc, BratsInputError) else f"{target}: cannot write: {exc.strerror or exc}"
    result.seconds = time.perf_counter() - start
    return result


def _collect(writing: Future, results: list[CaseResult], table: Path, overwrite: bool) -> None:
    results.append(writing.result())
    atomic_write_text(table, volumes_table(results), overwrite=True)


def volumes_table(results: Sequence[CaseResult]) -> str:
    """CSV text: case_id, file, WT/TC/ET volumes in mL, seconds, error."""
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case_id", "segmentation", "WT_ml", "TC_ml", "ET_ml", "seconds", "error"])
    for r in results:
        v = r.volumes_ml
        writer.writerow([
            r.case_id or r.source.name, r.output.name if r.output else "",
            *(f"{v[k]:.3f}" if k in v else "" for k in ("WT", "TC", "ET")),
            f"{r.seconds:.2f}", r.error or "",
        ])
    return buffer.getvalue()
