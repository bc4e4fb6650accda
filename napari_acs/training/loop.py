"""``finetune``: the one training loop behind the CLI, the napari widget, scripts and ``torchrun``.

Live reporting goes two ways: ``progress(fraction, message)`` (a bar and a line of
text) and ``on_event(event)``, a dict per event for live curves:

* ``{"event": "start", "task", "epochs", "start_epoch", "steps_per_epoch", "monitor",
  "train_ids", "val_ids", "out_dir"}``
* ``{"event": "warning", "message"}``
* ``{"event": "step", "epoch", "step", "steps", "loss", "lr"}`` after every optimiser step
* ``{"event": "epoch", **history_row, "is_best"}`` after every epoch (the ``history.csv`` row)
* ``{"event": "end", "cancelled", "epochs_completed", "last_checkpoint", "best_checkpoint"}`` (paths or None)

Under ``torchrun`` only rank 0 reports and writes files.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from napari_acs.models.acs_paths import configure_acs
from napari_acs.models.checkpoint import save_checkpoint
from napari_acs.models.factory import create_model
from napari_acs.models.registry import get_preset
from napari_acs.progress import CancelSignal, Cancelled, ProgressCallback, cancel_reason, check_cancel, report
from napari_acs.training.augment import Augmentation
from napari_acs.training.cohort import (
    CohortCase,
    classification_case,
    discover,
    load_all,
    segmentation_case,
    split_subjects,
)
from napari_acs.training.config import (
    DEFAULT_LABELS_CSV,
    DEFAULT_SEGMENTATION_STEPS,
    FinetuneConfig,
    FinetuneResult,
)
from napari_acs.training.datasets import ClassificationSamples, SegmentationPatches
from napari_acs.training.distributed import DistContext, init_distributed
from napari_acs.training.initial import initial_weights
from napari_acs.training.evaluation import (
    classification_outputs,
    segmentation_scores,
    summarise_classification,
    summarise_segmentation,
)
from napari_acs.training.losses import RegionLoss
from napari_acs.training.measure import PeakMemory
from napari_acs.training.mgmt import LabelsCSVError, match_labels, read_mgmt_csv
from napari_acs.training.state import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    clear_stopped,
    prepare_run_folder,
    save_state,
    write_config,
    write_history,
    write_stopped,
)
from napari_acs.training.step import train_step

EventCallback = Callable[[dict[str, Any]], None]
#: Share of the progress bar spent loading the cohort.
LOAD_SHARE = 0.05
#: The history column that picks the best epoch, per task.
MONITOR = {"segmentation": "val_dice_mean", "classification": "val_auc"}
CLASSIFICATION_PREPROCESSING = (
    "brain bounding box, z-score inside the brain per channel, zero-padded to a cube, resized to input_size"
)


def finetune(
    config: FinetuneConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    on_event: EventCallback | None = None,
) -> FinetuneResult:
    """Fine-tune a preset for BraTS segmentation or MGMT classification (see :class:`FinetuneConfig`).

    Every epoch writes ``last.safetensors``, ``best.safetensors`` (when validation
    improves), ``training_state.pt`` and ``history.csv`` to ``config.out_dir``,
    atomically, so a killed run loses at most the epoch in progress and
    ``resume=True`` continues exactly where the last epoch ended. ``cancel`` is
    checked between steps: the run then saves the current model to
    ``last.safetensors`` and returns with ``cancelled=True`` (a cancel while the
    cohort is still loading raises :class:`~napari_acs.progress.Cancelled`).
    Run under ``torchrun`` it trains with DistributedDataParallel.

    Args:
        config: the run (see :class:`FinetuneConfig`).
        progress: ``progress(fraction, message)``, called after every step.
        cancel: a ``threading.Event`` or a callable returning True to stop.
        on_event: receives a dict per event (see this module's docstring), e.g.
            to draw live loss and validation curves.

    Raises:
        BratsInputError: a bad cohort folder or case.
        LabelsCSVError: a bad or missing labels CSV (classification).
        FileExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        ValueError: too few usable cases, or a resumed run whose settings changed.
    """
    ctx, device = init_distributed(config.device)
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):  # the caller's random state is left alone
            return _Run(config, ctx, device, progress, cancel, on_event).run()
    finally:
        ctx.close()


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class _Run:
    """One call of :func:`finetune` (state shared by its phases)."""

    def __init__(
        self,
        config: FinetuneConfig,
        ctx: DistContext,
        device: torch.device,
        progress: ProgressCallback | None,
        cancel: CancelSignal,
        on_event: EventCallback | None,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.device = device
        self.progress = progress if ctx.is_main else None
        self.on_event = on_event if ctx.is_main else None
        self.cancel = cancel
        self.amp = config.amp and device.type == "cuda"
        self.segmentation = config.task == "segmentation"
        self.monitor: str | None = MONITOR[config.task] if config.val_fraction > 0 else None
        self.warnings: list[str] = []
        self.preset = get_preset(config.model)
        self.patch = tuple(config.patch_size or self.preset.patch_size)

    # ------------------------------------------------------------------ reporting

    def _emit(self, event: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, **fields})

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        report(self.progress, 0.0, f"warning: {message}")
        self._emit("warning", message=message)

    # ------------------------------------------------------------------ cohort

    def _usable_cases(self) -> tuple[list[CohortCase], dict[str, int] | None]:
        """Cases to train and validate on, and their MGMT labels (classification)."""
        cases, rejected = discover(self.config.cohort)
        for problem in rejected:
            self._warn(f"case skipped: {problem}")
        if self.segmentation:
            unlabelled = [c.case_id for c in cases if not c.has_seg]
            if unlabelled:
                self._warn(f"{len(unlabelled)} cases without a seg file (not used): {', '.join(unlabelled[:10])}")
            return [c for c in cases if c.has_seg], None
        csv_path = self.config.labels_csv or self.config.cohort / DEFAULT_LABELS_CSV
        if not csv_path.is_file():
            raise LabelsCSVError(
                f"{csv_path}: labels CSV not found; classification needs a BraTS21ID,MGMT_value CSV "
                "(labels_csv / --labels-csv)"
            )
        matched = match_labels(read_mgmt_csv(csv_path), [c.case_id for c in cases], [c.folder.name for c in cases])
        for line in matched.warnings(csv_path):
            self._warn(line)
        return [c for c in cases if c.case_id in matched.labels], matched.labels

    def _load(self, cases: list[CohortCase], labels: dict[str, int] | None) -> list:
        cfg = self.config

        def load(case: CohortCase):
            if self.segmentation:
                return segmentation_case(case.folder, self.patch, cfg.seed)
            return classification_case(case.folder, labels[case.case_id], self.patch)

        def loading(fraction: float, message: str) -> None:
            report(self.progress, LOAD_SHARE * fraction, message)

        return load_all(load, cases, progress=loading, cancel=self.cancel)

    # ------------------------------------------------------------------ run

    def run(self) -> FinetuneResult:
        cfg, ctx = self.config, self.ctx
        initial = initial_weights(cfg) if cfg.init is not None and not cfg.resume else None  # checked first
        cases, labels = self._usable_cases()
        if len(cases) < (2 if cfg.val_fraction > 0 else 1):
            raise ValueError(f"{cfg.cohort}: {len(cases)} usable cases for {cfg.task}; too few to train")
        ids = [c.case_id for c in cases]
        strata = [labels[i] for i in ids] if labels is not None else None
        self.train_ids, self.val_ids = split_subjects(
            ids, cfg.val_fraction, cfg.seed if cfg.split_seed is None else cfg.split_seed, strata)

        prepared = None
        if ctx.is_main:
            try:
                prepared = ("ok", *prepare_run_folder(cfg))
            except (OSError, ValueError) as exc:
                prepared = ("error", exc, None)
        status, state, message = ctx.broadcast(prepared)
        if status == "error":
            raise state
        if state is not None and (state["train_ids"], state["val_ids"]) != (self.train_ids, self.val_ids):
            raise ValueError(f"{cfg.out_dir}: the cohort's split changed since the saved run; cannot resume")
        report(self.progress, 0.0, message)

        by_id = {c.case_id: c for c in cases}
        val_local = self.val_ids[ctx.rank :: ctx.world_size]  # each process validates its share
        loaded, skipped = self._load([by_id[i] for i in self.train_ids + val_local], labels)
        self._drop_skipped(loaded, skipped, val_local)
        self._build(state, initial)
        return self._train(state)

    def _drop_skipped(self, loaded: list, skipped: dict[str, str], val_local: list[str]) -> None:
        """Leave out the cases that could not be loaded (in every process), warn, and refuse
        only when too few remain."""
        cfg = self.config
        skipped = {case_id: reason for part in self.ctx.gather(skipped) for case_id, reason in part.items()}
        for reason in skipped.values():
            self._warn(f"case skipped: {reason}")
        self.train_ids = [i for i in self.train_ids if i not in skipped]
        self.val_ids = [i for i in self.val_ids if i not in skipped]
        kept = {item.case_id: item for item in loaded if item.case_id not in skipped}
        self.train_cases = [kept[i] for i in self.train_ids]
        self.val_local = [kept[i] for i in val_local if i not in skipped]  # this process's share
        if not self.train_ids or (cfg.val_fraction > 0 and not self.val_ids):
            what = f"{len(self.train_ids)} training and {len(self.val_ids)} validation cases"
            raise ValueError(f"{cfg.cohort}: {what} left after skipping {len(skipped)} that cannot be read; "
                             "too few to train (first: " + next(iter(skipped.values()), "none") + ")")

    def _build(self, state: dict | None, initial: dict | None = None) -> None:
        cfg, ctx = self.config, self.ctx
        torch.manual_seed(cfg.seed)  # the same decoder/head initialisation in every process and run
        pretrained = False if initial is not None else cfg.pretrained  # every weight comes from cfg.init
        self.model = create_model(cfg.model, conv=cfg.conv, task=cfg.task, pretrained=pretrained).to(self.device)
        if initial is not None:
            self.model.load_state_dict(initial)
        configure_acs(self.model, self.device, training=True)  # ACS layers' operator paths for this device
        if state is not None:
            self.model.load_state_dict(state["model"])
        self.net: nn.Module = self.model
        if ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        n_train = len(self.train_cases)
        if self.segmentation:
            self.steps = cfg.steps_per_epoch or DEFAULT_SEGMENTATION_STEPS
        else:
            self.steps = cfg.steps_per_epoch or math.ceil(n_train / (cfg.batch_size * ctx.world_size))
        length = self.steps * cfg.batch_size * ctx.world_size
        if cfg.augment:
            augmentation = Augmentation(modality_dropout=cfg.modality_dropout)
        else:
            augmentation = Augmentation.dropout_only(cfg.modality_dropout) if cfg.modality_dropout else None
        if self.segmentation:
            self.dataset = SegmentationPatches(
                self.train_cases, self.patch, length, seed=cfg.seed,
                foreground_fraction=cfg.foreground_fraction, augmentation=augmentation,
            )
            self.loss_fn: nn.Module = RegionLoss()
        else:
            self.dataset = ClassificationSamples(self.train_cases, length, seed=cfg.seed, augmentation=augmentation)
            self.loss_fn = nn.BCEWithLogitsLoss()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * self.steps
        if cfg.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        elif cfg.schedule == "poly":
            self.scheduler = torch.optim.lr_scheduler.PolynomialLR(self.optimizer, total_iters=total, power=0.9)
        else:
            self.scheduler = torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])

    def _train(self, state: dict | None) -> FinetuneResult:
        cfg, ctx = self.config, self.ctx
        start = state["epoch"] + 1 if state else 1
        history: list[dict[str, Any]] = list(state["history"]) if state else []
        self.best: dict[str, Any] = dict(state["best"]) if state else {"epoch": None, "value": None}
        if ctx.is_main:
            write_config(cfg.out_dir, cfg, {
                "train_ids": self.train_ids, "val_ids": self.val_ids, "world_size": ctx.world_size,
                "steps_per_epoch": self.steps, "preset": self.preset.to_dict(), "warnings": self.warnings,
            })
            write_history(cfg.out_dir, history)
            clear_stopped(cfg.out_dir)
        self._emit("start", task=cfg.task, epochs=cfg.epochs, start_epoch=start, steps_per_epoch=self.steps,
                   monitor=self.monitor, train_ids=self.train_ids, val_ids=self.val_ids, out_dir=str(cfg.out_dir))
        self.warm = False
        cancelled = False
        epoch = start
        self.steps_done = 0  # in the epoch in progress
        try:
            for epoch in range(start, cfg.epochs + 1):
                row = self._train_epoch(epoch)
                row.update(self._validate(epoch))
                history.append(row)
                self._end_epoch(epoch, row, history)
        except Cancelled:
            cancelled = True
            reason = cancel_reason(self.cancel, "stopped")
            if ctx.is_main:
                last = save_checkpoint(self.model, cfg.out_dir / LAST_CHECKPOINT, overwrite=True,
                                       **self._meta(len(history), history[-1] if history else {}, cancelled_in=epoch))
                write_stopped(cfg.out_dir, reason=reason, epoch=epoch, steps_done=self.steps_done,
                              epochs_completed=len(history), checkpoint=last)
            report(self.progress, 0.0 if not history else len(history) / cfg.epochs,
                   f"{reason}: stopped in epoch {epoch}, current model saved to {LAST_CHECKPOINT}")
        ctx.barrier()
        result = FinetuneResult(
            history=history,
            out_dir=cfg.out_dir,
            last_checkpoint=_existing(cfg.out_dir / LAST_CHECKPOINT),
            best_checkpoint=_existing(cfg.out_dir / BEST_CHECKPOINT) if self.monitor else None,
            monitor=self.monitor,
            epochs_completed=len(history),
            cancelled=cancelled,
            warnings=self.warnings,
            train_ids=self.train_ids,
            val_ids=self.val_ids,
            model=self.model,
        )
        self._emit("end", cancelled=cancelled, epochs_completed=len(history),
                   last_checkpoint=result.last_checkpoint, best_checkpoint=result.best_checkpoint)
        return result

    # ------------------------------------------------------------------ one epoch

    def _fraction(self, epoch: int, done: int) -> float:
        per_epoch = self.steps + len(self.val_local)
        return LOAD_SHARE + (1 - LOAD_SHARE) * ((epoch - 1) * per_epoch + done) / (self.config.epochs * per_epoch)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, ctx, device = self.config, self.ctx, self.device
        seed = int(np.random.SeedSequence([cfg.seed, epoch, ctx.rank]).generate_state(1)[0])
        torch.manual_seed(seed)  # dropout and other in-model randomness, reproducible on resume
        self.dataset.set_epoch(epoch)
        sampler = DistributedSampler(self.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
        loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                            num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
        memory = PeakMemory(device)
        memory.start()
        self.net.train()
        losses, times = [], []
        began = time.perf_counter()
        self.steps_done = 0
        for step, (x, y) in enumerate(loader, 1):
            check_cancel(self.cancel, "fine-tuning")
            tic = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = train_step(self.net, x, y, self.loss_fn, self.optimizer, self.scaler, self.amp)
            self.scheduler.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss became {value} at epoch {epoch}, step {step}; try a lower learning rate"
                )
            if self.warm:  # the process's first step includes one-off allocation and set-up
                times.append(time.perf_counter() - tic)
            self.warm = True
            self.steps_done = step
            losses.append(value)
            lr = self.scheduler.get_last_lr()[0]
            report(self.progress, self._fraction(epoch, step),
                   f"epoch {epoch}/{cfg.epochs} step {step}/{self.steps} loss {value:.4f}")
            self._emit("step", epoch=epoch, step=step, steps=self.steps, loss=value, lr=lr)
        if ctx.distributed:  # BatchNorm running statistics: every rank keeps rank 0's
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        parts = ctx.gather((sum(losses), len(losses)))
        return {
            "epoch": epoch,
            "steps": self.steps,
            "train_loss": sum(p[0] for p in parts) / max(sum(p[1] for p in parts), 1),
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - began,
            "step_seconds": statistics.median(times) if times else math.nan,
            "peak_memory_mib": memory.peak_mib(),
        }

    def _validate(self, epoch: int) -> dict[str, float]:
        if not self.val_ids:
            return {}
        report(self.progress, self._fraction(epoch, self.steps), f"epoch {epoch}: validating {len(self.val_ids)} cases")
        tic = time.perf_counter()
        kwargs = {"device": self.device, "amp": self.config.amp, "cancel": self.cancel}
        if self.segmentation:
            local = segmentation_scores(self.model, self.val_local, **kwargs)
        else:
            local = classification_outputs(self.model, self.val_local, batch_size=self.config.batch_size, **kwargs)
        merged = [item for part in self.ctx.gather(local) for item in part]
        summary = summarise_segmentation(merged) if self.segmentation else summarise_classification(merged)
        return {**summary, "val_seconds": time.perf_counter() - tic}

    def _end_epoch(self, epoch: int, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        cfg = self.config
        value = row.get(self.monitor) if self.monitor else None
        is_best = (value is not None and math.isfinite(value)
                   and (self.best["value"] is None or value > self.best["value"]))
        if is_best:
            self.best = {"epoch": epoch, "value": value}
        if self.ctx.is_main:
            meta = self._meta(epoch, row)
            save_checkpoint(self.model, cfg.out_dir / LAST_CHECKPOINT, overwrite=True, **meta)
            if is_best:
                save_checkpoint(self.model, cfg.out_dir / BEST_CHECKPOINT, overwrite=True, **meta)
            save_state(cfg.out_dir, {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best": self.best,
                "history": history,
                "config": cfg.to_dict(),
                "train_ids": self.train_ids,
                "val_ids": self.val_ids,
            })
            write_history(cfg.out_dir, history)
        shown = f"loss {row['train_loss']:.4f}"
        if value is not None:
            shown += f", {self.monitor} {value:.4f}"
        report(self.progress, self._fraction(epoch + 1, 0), f"epoch {epoch}/{cfg.epochs} done: {shown}")
        self._emit("epoch", **row, is_best=is_best)

    # ------------------------------------------------------------------ checkpoint metadata

    def _meta(self, epoch: int, row: dict[str, Any], cancelled_in: int | None = None) -> dict[str, Any]:
        """Metadata of ``last``/``best``: what inference and a model card need to know."""
        cfg = self.config
        training = {
            "epochs_completed": epoch,
            "config": cfg.to_dict(),
            "steps_per_epoch": self.steps,
            "world_size": self.ctx.world_size,
            "train_ids": self.train_ids,
            "val_ids": self.val_ids,
            "best_epoch": self.best["epoch"] if hasattr(self, "best") else None,
            "monitor": self.monitor,
        }
        if cancelled_in is not None:
            training["cancelled_during_epoch"] = cancelled_in
        meta: dict[str, Any] = {
            "task": cfg.task,
            "normalisation": self.preset.normalisation,
            "patch_size": list(self.patch),
            "training": training,
            "metrics": {key: _finite_or_none(v) for key, v in row.items() if key.startswith("val_")},
        }
        if self.segmentation:
            conventions = Counter(case.convention for case in self.train_cases)
            meta["label_convention"] = conventions.most_common(1)[0][0]
        else:
            meta.update(input_size=list(self.patch), preprocessing=CLASSIFICATION_PREPROCESSING,
                        positive_class="MGMT promoter methylated (MGMT_value 1)")
        return meta


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None
