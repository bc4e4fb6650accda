"""The paper's experiment as a command: one preset as ACS with ImageNet weights and as native
3D from scratch, trained one after the other on the same split with the same budget.

Writes to ``out_dir``: ``acs_imagenet/`` and ``3d_scratch/`` (two ordinary fine-tuning
runs), ``compare.md`` and ``compare.csv`` (parameters, GFLOPs per patch, seconds per
step, peak memory, best validation metric) and learning curves as PNG.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_acs.io.files import atomic_write_text
from napari_acs.models.registry import get_preset
from napari_acs.progress import CancelSignal, ProgressCallback, report
from napari_acs.training.config import FinetuneConfig, FinetuneResult
from napari_acs.training.loop import MONITOR, EventCallback, finetune
from napari_acs.training.measure import forward_gflops, parameter_count
from napari_acs.training.plots import line_plot

#: (run folder, conv, pretrained): the two arms of the comparison.
VARIANTS: tuple[tuple[str, str, bool], ...] = (("acs_imagenet", "acs", True), ("3d_scratch", "3d", False))
TABLE_MD = "compare.md"
TABLE_CSV = "compare.csv"
COLUMNS = (
    "variant", "conv", "pretrained", "parameters_M", "gflops_per_patch", "seconds_per_step",
    "peak_memory_mib", "best_metric", "best_value", "best_epoch", "epochs",
)


@dataclass
class CompareResult:
    """Rows of the table (one dict per variant, keys :data:`COLUMNS`), files written, the runs."""

    rows: list[dict[str, Any]]
    table_md: Path | None
    table_csv: Path | None
    plots: list[Path] = field(default_factory=list)
    runs: dict[str, FinetuneResult] = field(default_factory=dict)
    cancelled: bool = False


def _patch(config: FinetuneConfig) -> tuple[int, int, int]:
    return tuple(config.patch_size or get_preset(config.model).patch_size)


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _row(variant: str, conv: str, pretrained: bool, run: FinetuneResult, patch: tuple[int, ...]) -> dict[str, Any]:
    monitor = run.monitor or "train_loss"
    values = [(row.get(monitor, math.nan), row["epoch"]) for row in run.history]
    scored = [(v, e) for v, e in values if isinstance(v, float) and math.isfinite(v)]
    pick = min if monitor == "train_loss" else max
    best_value, best_epoch = pick(scored) if scored else (math.nan, None)
    steps = _finite([row.get("step_seconds") for row in run.history])
    memory = _finite([row.get("peak_memory_mib") for row in run.history])
    return {
        "variant": variant,
        "conv": conv,
        "pretrained": "ImageNet" if pretrained else "scratch",
        "parameters_M": parameter_count(run.model) / 1e6,
        "gflops_per_patch": forward_gflops(run.model, patch),
        "seconds_per_step": statistics.median(steps) if steps else math.nan,
        "peak_memory_mib": max(memory) if memory else math.nan,
        "best_metric": monitor,
        "best_value": best_value,
        "best_epoch": best_epoch,
        "epochs": run.epochs_completed,
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return "n/a" if value is None else str(value)


def table_markdown(rows: list[dict[str, Any]], config: FinetuneConfig) -> str:
    """The comparison as a Markdown table with a line on the budget."""
    lines = [
        f"# ACS (ImageNet) vs native 3D (scratch): {config.model}, {config.task}",
        "",
        f"Cohort `{config.cohort}`, {config.epochs} epochs x {config.steps_per_epoch or 'default'} steps, "
        f"batch {config.batch_size}, patch {'x'.join(map(str, _patch(config)))}, lr {config.lr:g} ({config.schedule}), "
        f"seed {config.seed}, validation fraction {config.val_fraction:g}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_format(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([[_format(row[c]) for c in COLUMNS] for row in rows])
    return buffer.getvalue()


def compare(
    config: FinetuneConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    on_event: EventCallback | None = None,
) -> CompareResult:
    """Run both arms of :data:`VARIANTS` with ``config`` (its ``conv`` and ``pretrained`` are
    replaced) in ``config.out_dir/<variant>``; write the table and the learning curves.

    ``on_event`` receives the runs' events with a ``"variant"`` key added. On cancel
    the table covers the runs that finished (none written if the first was cancelled).
    """
    out = config.out_dir
    if (out / TABLE_MD).exists() and not (config.overwrite or config.resume):
        raise FileExistsError(f"{out / TABLE_MD} exists; pass overwrite (--overwrite) or resume (--resume)")
    runs: dict[str, FinetuneResult] = {}
    rows = []
    for index, (variant, conv, pretrained) in enumerate(VARIANTS):
        arm = dataclasses.replace(config, conv=conv, pretrained=pretrained, out_dir=out / variant)

        def arm_progress(fraction: float, message: str, index: int = index, variant: str = variant) -> None:
            report(progress, (index + fraction) / len(VARIANTS), f"{variant}: {message}")

        def arm_event(event: dict[str, Any], variant: str = variant) -> None:
            if on_event is not None:
                on_event({**event, "variant": variant})

        run = finetune(arm, progress=arm_progress, cancel=cancel, on_event=arm_event)
        if run.cancelled:
            return _written(out, rows, runs, config, cancelled=True)
        runs[variant] = run
        rows.append(_row(variant, conv, pretrained, run, _patch(config)))
    return _written(out, rows, runs, config, cancelled=False)


def _written(
    out: Path, rows: list[dict[str, Any]], runs: dict[str, FinetuneResult], config: FinetuneConfig, *, cancelled: bool
) -> CompareResult:
    """Write the table and the curves of the finished runs."""
    if not rows:
        return CompareResult(rows, None, None, runs=runs, cancelled=cancelled)
    md = atomic_write_text(out / TABLE_MD, table_markdown(rows, config))
    csv_path = atomic_write_text(out / TABLE_CSV, table_csv(rows))
    monitor = MONITOR[config.task] if config.val_fraction > 0 else None
    curves = [("train_loss", "training loss")] + ([(monitor, f"validation {monitor[4:]}")] if monitor else [])
    plots = []
    for column, label in curves:
        series = {
            variant: ([row["epoch"] for row in run.history], [row.get(column, math.nan) for row in run.history])
            for variant, run in runs.items()
        }
        plots.append(line_plot(series, out / f"curves_{column}.png", title=f"{config.model}: {label}",
                               xlabel="epoch", ylabel=label))
    return CompareResult(rows, md, csv_path, plots, runs, cancelled)
