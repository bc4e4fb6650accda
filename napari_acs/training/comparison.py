"""The paper's experiment as a command: one preset trained in up to four arms, one after the
other, on the same split with the same budget, for one or several seeds.

The arms (:data:`ARMS`) separate the two things the paper's claim mixes, the ACS
architecture and the ImageNet initialisation: ACS with ImageNet weights, ACS from scratch,
native 3D from scratch, and native 3D with the ImageNet kernels inflated (I3D: each 2D
k x k kernel repeated along the third axis and divided by k).

Writes to ``out_dir``: one ordinary fine-tuning run per arm and seed (``<arm>/``, or
``<arm>/seed<k>/`` with several seeds), ``compare.md`` and ``compare.csv`` (parameters,
GFLOPs per patch, seconds per step, peak memory, best validation metric; one row per run,
and in the Markdown a summary per arm with mean +- standard deviation over the seeds) and
learning curves as PNG (one line per arm, a band of +- one standard deviation over seeds).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from napari_acs.io.files import atomic_write_text
from napari_acs.models.registry import get_preset
from napari_acs.progress import CancelSignal, ProgressCallback, report
from napari_acs.training.config import ARMS, DEFAULT_ARMS, FinetuneConfig, FinetuneResult
from napari_acs.training.loop import MONITOR, EventCallback, finetune
from napari_acs.training.measure import forward_gflops, parameter_count
from napari_acs.training.plots import line_plot

TABLE_MD = "compare.md"
TABLE_CSV = "compare.csv"
COLUMNS = (
    "variant", "seed", "conv", "pretrained", "parameters_M", "gflops_per_patch", "seconds_per_step",
    "peak_memory_mib", "best_metric", "best_value", "best_epoch", "epochs",
)
#: Validation metrics of the best epoch added to each run's row, per task (history columns).
TASK_COLUMNS = {
    "segmentation": ("val_dice_WT", "val_dice_TC", "val_dice_ET"),
    "classification": ("val_accuracy", "val_balanced_accuracy", "val_auc", "val_auc_low", "val_auc_high"),
}
#: The note the classification table carries: what the real task reaches.
MGMT_NOTE = ("Real MGMT promoter methylation prediction from MRI reaches only about 0.6 ROC AUC (RSNA-MICCAI "
             "2021 BraTS radiogenomic challenge); on the synthetic cohort the signal is planted, so "
             "these figures compare the arms, not what MRI can tell.")


@dataclass
class CompareResult:
    """Rows of the table (one dict per run, keys :data:`COLUMNS`), files written, the runs by
    ``(arm, seed)``."""

    rows: list[dict[str, Any]]
    table_md: Path | None
    table_csv: Path | None
    plots: list[Path] = field(default_factory=list)
    runs: dict[tuple[str, int], FinetuneResult] = field(default_factory=dict)
    cancelled: bool = False


def _patch(config: FinetuneConfig) -> tuple[int, int, int]:
    return tuple(config.patch_size or get_preset(config.model).patch_size)


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _row(variant: str, seed: int, run: FinetuneResult, patch: tuple[int, ...], task: str) -> dict[str, Any]:
    conv, pretrained = ARMS[variant]
    monitor = run.monitor or "train_loss"
    values = [(row.get(monitor, math.nan), row["epoch"]) for row in run.history]
    scored = [(v, e) for v, e in values if isinstance(v, float) and math.isfinite(v)]
    pick = min if monitor == "train_loss" else max
    best_value, best_epoch = pick(scored) if scored else (math.nan, None)
    best_row = next((row for row in run.history if row["epoch"] == best_epoch), {})
    steps = _finite([row.get("step_seconds") for row in run.history])
    memory = _finite([row.get("peak_memory_mib") for row in run.history])
    return {
        "variant": variant,
        "seed": seed,
        "conv": conv,
        "pretrained": ("ImageNet, inflated" if conv == "3d" else "ImageNet") if pretrained else "scratch",
        "parameters_M": parameter_count(run.model) / 1e6,
        "gflops_per_patch": forward_gflops(run.model, patch),
        "seconds_per_step": statistics.median(steps) if steps else math.nan,
        "peak_memory_mib": max(memory) if memory else math.nan,
        "best_metric": monitor,
        "best_value": best_value,
        "best_epoch": best_epoch,
        "epochs": run.epochs_completed,
        **{c: best_row.get(c, math.nan) for c in TASK_COLUMNS[task]},
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return "n/a" if value is None else str(value)


#: Columns of the per-arm summary (mean +- standard deviation over the seeds).
SUMMARY_COLUMNS = ("parameters_M", "gflops_per_patch", "seconds_per_step", "peak_memory_mib", "best_value")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g}"


def columns(task: str) -> tuple[str, ...]:
    """Columns of a run's row: :data:`COLUMNS` then the task's :data:`TASK_COLUMNS`."""
    return COLUMNS + TASK_COLUMNS[task]


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per arm (in run order): ``n_seeds`` and each :data:`SUMMARY_COLUMNS` and task
    column (not the AUC's interval bounds) as ``"mean +- sd"`` text over the arm's seeds."""
    arms = dict.fromkeys(row["variant"] for row in rows)
    summary = []
    for arm in arms:
        runs = [row for row in rows if row["variant"] == arm]
        summary.append({
            "variant": arm, "conv": runs[0]["conv"], "pretrained": runs[0]["pretrained"], "n_seeds": len(runs),
            "best_metric": runs[0]["best_metric"],
            **{c: _mean_sd(_finite([row.get(c) for row in runs])) for c in _summarised(runs[0])},
        })
    return summary


def _summarised(row: dict[str, Any]) -> tuple[str, ...]:
    task_columns = next(cols for cols in TASK_COLUMNS.values() if cols[0] in row)
    return SUMMARY_COLUMNS + tuple(c for c in task_columns if not c.startswith("val_auc_"))


def _markdown_table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(_format(row[c]) for c in columns) + " |" for row in rows)]


def table_markdown(rows: list[dict[str, Any]], config: FinetuneConfig) -> str:
    """The comparison as Markdown: a line on the budget, the per-arm summary, every run."""
    seeds = sorted({row["seed"] for row in rows})
    lines = [
        f"# ACS vs native 3D, ImageNet vs scratch: {config.model}, {config.task}",
        "",
        f"Cohort `{config.cohort}`, {config.epochs} epochs x {config.steps_per_epoch or 'default'} steps, "
        f"batch {config.batch_size}, patch {'x'.join(map(str, _patch(config)))}, lr {config.lr:g} ({config.schedule}), "
        f"seeds {', '.join(map(str, seeds))} (one split, drawn with seed {config.seed}), "
        f"validation fraction {config.val_fraction:g}.",
        "",
        "Per arm, mean +- standard deviation over the seeds:",
        "",
        *_markdown_table(("variant", "conv", "pretrained", "n_seeds", *SUMMARY_COLUMNS[:-1], "best_metric",
                          *_summarised(rows[0])[len(SUMMARY_COLUMNS) - 1:]), summary_rows(rows)),
        "",
        "Every run (validation metrics of the best epoch"
        + ("; val_auc_low/high: 95 % bootstrap interval over subjects" if config.task == "classification" else "")
        + "):",
        "",
        *_markdown_table(columns(config.task), rows),
    ]
    if config.task == "classification":
        lines += ["", MGMT_NOTE]
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict[str, Any]], task: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(task))
    writer.writerows([[_format(row[c]) for c in columns(task)] for row in rows])
    return buffer.getvalue()


def compare(
    config: FinetuneConfig,
    *,
    arms: Sequence[str] = DEFAULT_ARMS,
    seeds: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    on_event: EventCallback | None = None,
) -> CompareResult:
    """Train every arm of ``arms`` (names in :data:`ARMS`) for every seed of ``seeds`` (default:
    ``config.seed`` alone) with ``config`` (its ``conv``, ``pretrained`` and ``seed`` are
    replaced; the split stays the one ``config.seed`` draws) in ``config.out_dir/<arm>`` (or
    ``<arm>/seed<k>`` with several seeds); write the tables and the learning curves.

    ``on_event`` receives the runs' events with ``"variant"`` and ``"seed"`` keys added. On
    cancel the tables cover the runs that finished (none written if the first was cancelled).
    """
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or not arms:
        raise ValueError(f"unknown arm(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ARMS)}")
    seeds = [config.seed] if seeds is None else list(dict.fromkeys(seeds))
    out = config.out_dir
    if (out / TABLE_MD).exists() and not (config.overwrite or config.resume):
        raise FileExistsError(f"{out / TABLE_MD} exists; pass overwrite (--overwrite) or resume (--resume)")
    plan = [(arm, seed) for arm in dict.fromkeys(arms) for seed in seeds]
    runs: dict[tuple[str, int], FinetuneResult] = {}
    rows = []
    for index, (variant, seed) in enumerate(plan):
        conv, pretrained = ARMS[variant]
        folder = out / variant if len(seeds) == 1 else out / variant / f"seed{seed}"
        arm = dataclasses.replace(config, conv=conv, pretrained=pretrained, seed=seed, split_seed=config.seed,
                                  out_dir=folder)
        name = variant if len(seeds) == 1 else f"{variant} seed {seed}"

        def arm_progress(fraction: float, message: str, index: int = index, name: str = name) -> None:
            report(progress, (index + fraction) / len(plan), f"{name}: {message}")

        def arm_event(event: dict[str, Any], variant: str = variant, seed: int = seed) -> None:
            if on_event is not None:
                on_event({**event, "variant": variant, "seed": seed})

        run = finetune(arm, progress=arm_progress, cancel=cancel, on_event=arm_event)
        if run.cancelled:
            return _written(out, rows, runs, config, cancelled=True)
        runs[variant, seed] = run
        rows.append(_row(variant, seed, run, _patch(config), config.task))
    return _written(out, rows, runs, config, cancelled=False)


def _curves(runs: dict[tuple[str, int], FinetuneResult], column: str) -> tuple[dict, dict]:
    """Per arm: (epochs, mean over seeds) and (lower, upper) = mean -+ one standard deviation."""
    series, bands = {}, {}
    for arm in dict.fromkeys(variant for variant, _ in runs):
        histories = [run.history for (variant, _), run in runs.items() if variant == arm]
        epochs = sorted({row["epoch"] for history in histories for row in history})
        by_epoch = [_finite([row.get(column) for history in histories for row in history if row["epoch"] == e])
                    for e in epochs]
        means = [statistics.mean(v) if v else math.nan for v in by_epoch]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in by_epoch]
        series[arm] = (epochs, means)
        if len(histories) > 1:
            bands[arm] = ([m - d for m, d in zip(means, sds)], [m + d for m, d in zip(means, sds)])
    return series, bands


def _written(
    out: Path, rows: list[dict[str, Any]], runs: dict[tuple[str, int], FinetuneResult], config: FinetuneConfig, *,
    cancelled: bool,
) -> CompareResult:
    """Write the table and the curves of the finished runs."""
    if not rows:
        return CompareResult(rows, None, None, runs=runs, cancelled=cancelled)
    md = atomic_write_text(out / TABLE_MD, table_markdown(rows, config))
    csv_path = atomic_write_text(out / TABLE_CSV, table_csv(rows, config.task))
    monitor = MONITOR[config.task] if config.val_fraction > 0 else None
    curves = [("train_loss", "training loss")] + ([(monitor, f"validation {monitor[4:]}")] if monitor else [])
    plots = []
    for column, label in curves:
        series, bands = _curves(runs, column)
        plots.append(line_plot(series, out / f"curves_{column}.png", title=f"{config.model}: {label}",
                               xlabel="epoch", ylabel=label, bands=bands))
    return CompareResult(rows, md, csv_path, plots, runs, cancelled)
