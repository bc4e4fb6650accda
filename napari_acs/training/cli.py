"""Command-line front end of fine-tuning: ``napari-acs finetune``, ``napari-acs compare`` and
``python -m napari_acs.training`` (what ``torchrun`` launches), all with the same flags.

Heavy imports (torch, the training loop) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari_acs.cli_support import CLIError, ProgressBar, keep_freed_memory_for_reuse, print_table
from napari_acs.training.config import ARMS, DEFAULT_ARMS, SCHEDULES, TASKS, FinetuneConfig

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FinetuneConfig) if f.default is not dataclasses.MISSING}


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by ``finetune`` and ``compare``."""
    d = _DEFAULTS
    parser.add_argument("cohort", help="folder of BraTS case folders (with seg files for segmentation)")
    parser.add_argument("--out", required=True, help="output folder: checkpoints, history.csv, config.json")
    parser.add_argument("--task", choices=TASKS, default=d["task"], help=f"what to learn (default {d['task']})")
    parser.add_argument("--labels-csv", default=None,
                        help="classification: BraTS21ID,MGMT_value CSV (default <cohort>/train_labels.csv)")
    parser.add_argument("--model", default=None,
                        help=f"preset or timm encoder name (default {d['model']}, or the --init checkpoint's)")
    parser.add_argument("--patch-size", type=int, nargs="+", metavar="N", default=None,
                        help="network input in voxels, one or three multiples of 32 (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"],
                        help=f"samples per step and process (default {d['batch_size']})")
    parser.add_argument("--epochs", type=int, default=d["epochs"], help=f"epochs (default {d['epochs']})")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="optimiser steps per epoch (default: 100 for segmentation, "
                        "one pass over the subjects for classification)")
    parser.add_argument("--lr", type=float, default=d["lr"], help=f"peak learning rate, AdamW (default {d['lr']:g})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d["schedule"],
                        help=f"learning-rate decay (default {d['schedule']})")
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                        help=f"AdamW weight decay (default {d['weight_decay']:g})")
    parser.add_argument("--no-amp", action="store_true", help="no float16 mixed precision on CUDA")
    parser.add_argument("--val-fraction", type=float, default=d["val_fraction"],
                        help=f"share of subjects held out for validation, 0 for none (default {d['val_fraction']:g})")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help=f"split, initialisation and sampling seed (default {d['seed']})")
    parser.add_argument("--foreground-fraction", type=float, default=d["foreground_fraction"],
                        help="segmentation: share of patches centred on tumour (default 0.33)")
    parser.add_argument("--no-augment", action="store_true", help="no flips, intensity or affine augmentation")
    parser.add_argument("--modality-dropout", type=float, default=d["modality_dropout"], metavar="P",
                        help="probability per sample of zeroing a random subset of its sequences (at least "
                        "one kept), so the model segments from any subset (default 0: off)")
    parser.add_argument("--num-workers", type=int, default=d["num_workers"],
                        help=f"data-loader worker processes (default {d['num_workers']}: the main process)")
    parser.add_argument("--device", default=d["device"], help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="start from this napari-acs checkpoint's weights (fine-tune a trained model; "
                        "--model and --conv default to its network)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out at its next epoch")
    parser.add_argument("--overwrite", action="store_true", help="start again in an --out holding a previous run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """All ``finetune`` flags (also used by ``python -m napari_acs.training``)."""
    _add_run_arguments(parser)
    parser.add_argument("--conv", choices=("acs", "3d"), default=None,
                        help="ACS convolutions or native 3D (default acs, or the --init checkpoint's)")
    parser.add_argument("--pretrained", default="auto",
                        help="encoder weights: auto (ACS: ImageNet, 3D: scratch), imagenet, none, or a weight file")


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``finetune`` on a ``napari-acs`` subparsers object."""
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on a BraTS cohort (segmentation or MGMT classification)",
        description="Fine-tune an ACS or native-3D model. Writes last/best .safetensors checkpoints, "
        "training_state.pt (for --resume) and history.csv every epoch. Ctrl-C stops after the current "
        "step and saves the model. Multi-GPU: torchrun --nproc_per_node=N -m napari_acs.training <same flags>.",
    )
    add_finetune_arguments(parser)
    parser.set_defaults(handler=run_finetune)
    return parser


def add_compare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``compare`` on a ``napari-acs`` subparsers object."""
    parser = subparsers.add_parser(
        "compare",
        help="the paper's experiment: ACS vs native 3D, ImageNet vs scratch, over seeds",
        description="Train the same preset in each arm (ACS with ImageNet weights, ACS from scratch, native "
        "3D from scratch, native 3D with inflated ImageNet kernels) on the same split and budget, for each "
        "seed, one after the other; write compare.md (mean +- sd per arm), compare.csv (every run) and "
        "learning curves (PNG, a band over seeds) to --out.",
    )
    _add_run_arguments(parser)
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(DEFAULT_ARMS), metavar="ARM",
                        help=f"arms to train, in order (default all: {' '.join(DEFAULT_ARMS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                        help="repeat every arm with these seeds (initialisation, patches, augmentation; the "
                        "split stays the one --seed draws); default: --seed alone")
    parser.set_defaults(handler=run_compare)
    return parser


def _pretrained(value: str) -> bool | Path | None:
    named = {"auto": None, "imagenet": True, "none": False}
    if value.lower() in named:
        return named[value.lower()]
    if not Path(value).is_file():
        raise CLIError(f"--pretrained {value}: not auto, imagenet, none or an existing weight file")
    return Path(value)


def _network_defaults(fields: dict[str, Any]) -> None:
    """``model`` and ``conv`` not given: the ``init`` checkpoint's network, else the defaults."""
    built: dict[str, Any] = {}
    if fields.get("init") is not None and (fields.get("model") is None or fields.get("conv", "") is None):
        from napari_acs.models.checkpoint import CheckpointError, load_checkpoint

        try:
            built = load_checkpoint(fields["init"])[1]["create_model"]
        except CheckpointError as exc:
            raise CLIError(f"--init: {exc}") from exc
    for key, built_key in (("model", "name"), ("conv", "conv")):
        if key in fields and fields[key] is None:
            fields[key] = built.get(built_key, _DEFAULTS[key])


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The :class:`FinetuneConfig` that parsed flags describe."""
    fields: dict[str, Any] = {
        "cohort": args.cohort, "out_dir": args.out, "task": args.task, "labels_csv": args.labels_csv,
        "model": args.model, "patch_size": args.patch_size, "batch_size": args.batch_size,
        "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "lr": args.lr,
        "schedule": args.schedule, "weight_decay": args.weight_decay, "amp": not args.no_amp,
        "val_fraction": args.val_fraction, "seed": args.seed, "foreground_fraction": args.foreground_fraction,
        "augment": not args.no_augment, "modality_dropout": args.modality_dropout, "resume": args.resume, "overwrite": args.overwrite,
        "num_workers": args.num_workers, "device": args.device, "init": args.init,
    }
    if hasattr(args, "conv"):
        fields.update(conv=args.conv, pretrained=_pretrained(args.pretrained))
    _network_defaults(fields)
    if args.patch_size is not None and len(args.patch_size) == 1:
        fields["patch_size"] = args.patch_size[0]
    try:
        return FinetuneConfig(**fields)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


@contextlib.contextmanager
def _ctrl_c_stops() -> Iterator[threading.Event]:
    """An Event set by the first Ctrl-C (a graceful stop); a second Ctrl-C aborts.

    Not installed under ``torchrun`` (all processes must stop at the same step) or
    outside the main thread.
    """
    stop = threading.Event()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the current step and saving the model (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run(args: argparse.Namespace, what: str):
    """Build the config, run ``finetune`` or ``compare`` with a progress bar; errors -> CLIError."""
    from napari_acs.io import BratsInputError
    from napari_acs.models.weights import WeightsError
    from napari_acs.training.comparison import compare
    from napari_acs.training.loop import finetune

    keep_freed_memory_for_reuse()  # every step allocates the same: reuse instead of fresh zeroed pages
    config = config_from_args(args)
    bar = ProgressBar(not args.no_progress and _is_main_process(), what)
    if what == "finetune":
        run = finetune
    else:
        run = functools.partial(compare, arms=args.arms, seeds=args.seeds)
    try:
        with _ctrl_c_stops() as stop:
            return run(config, progress=bar, cancel=stop)
    except (BratsInputError, FileExistsError, ValueError, WeightsError) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()


def _print_history(history: list[dict[str, Any]], monitor: str | None) -> None:
    columns = ["epoch", "train_loss"] + ([monitor] if monitor else []) + ["step_seconds"]
    print_table([[f"{row.get(c, float('nan')):.4g}" if c != "epoch" else str(row[c]) for c in columns]
                  for row in history], columns)


def run_finetune(args: argparse.Namespace) -> int:
    """Handler of ``finetune``: exit code 0 when all epochs ran, 130 after a Ctrl-C stop (model saved)."""
    result = _run(args, "finetune")
    if not _is_main_process():
        return 0
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    _print_history(result.history, result.monitor)
    state = "stopped early" if result.cancelled else "finished"
    print(f"{state} after {result.epochs_completed} epochs; "
          f"last: {result.last_checkpoint}; best: {result.best_checkpoint}")
    return 130 if result.cancelled else 0


def run_compare(args: argparse.Namespace) -> int:
    """Handler of ``compare``: trains every arm and seed, prints the tables; exit code 0, 130 after a Ctrl-C stop."""
    result = _run(args, "compare")
    if result.table_md is None:
        print("stopped before the first run finished: no table written", file=sys.stderr)
    else:
        print(result.table_md.read_text())
        print(f"wrote {result.table_md}, {result.table_csv}, " + ", ".join(str(p) for p in result.plots))
    return 130 if result.cancelled else 0
