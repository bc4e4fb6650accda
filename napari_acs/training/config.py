"""What a fine-tuning run is asked to do (:class:`FinetuneConfig`) and what it gives back."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import nn

Task = Literal["segmentation", "classification"]
Schedule = Literal["cosine", "poly", "constant"]
TASKS: tuple[str, ...] = ("segmentation", "classification")
SCHEDULES: tuple[str, ...] = ("cosine", "poly", "constant")
#: Optimiser steps per epoch for segmentation when ``steps_per_epoch`` is not given.
DEFAULT_SEGMENTATION_STEPS = 100
#: The CSV looked for in the cohort folder when a classification run names none.
DEFAULT_LABELS_CSV = "train_labels.csv"
#: Config fields that may differ between a run and its resumption (they do not change the maths).
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "device", "num_workers"})


#: ``compare``'s arms: name -> (conv, pretrained); ``pretrained`` with ``conv="3d"`` inflates the ImageNet kernels.
ARMS: dict[str, tuple[str, bool]] = {
    "acs_imagenet": ("acs", True),
    "acs_scratch": ("acs", False),
    "3d_scratch": ("3d", False),
    "3d_inflated": ("3d", True),
}
DEFAULT_ARMS = tuple(ARMS)


@dataclass
class FinetuneConfig:
    """A fine-tuning run; the same object drives the CLI, the napari widget and scripts.

    Attributes:
        cohort: folder of BraTS case folders (see :func:`napari_acs.io.find_cases`).
        out_dir: where checkpoints, ``history.csv`` and ``config.json`` go.
        task: ``"segmentation"`` (WT/TC/ET regions) or ``"classification"`` (MGMT).
        labels_csv: ``BraTS21ID,MGMT_value`` CSV for classification; default
            ``<cohort>/train_labels.csv``.
        model: preset or timm encoder name (``napari_acs.models.list_models()``).
        conv: ``"acs"`` or ``"3d"``.
        pretrained: ImageNet encoder weights: ``True``, ``False``, a weight file, or
            ``None`` (ACS: ImageNet, 3D: from scratch, as ``create_model``).
        init: a napari-acs checkpoint to start from (fine-tuning a trained model, e.g. on a
            reader's corrections): all its weights; its network (``model``, ``conv``,
            ``task``) and normalisation must be this run's, checked before training starts.
            Ignored when resuming (the saved state wins).
        patch_size: network input (X, Y, Z) voxels: the training patch for
            segmentation, the fixed brain-crop size for classification; default the
            preset's patch size. Multiples of 32.
        batch_size: samples per optimiser step and per process.
        epochs: training epochs.
        steps_per_epoch: optimiser steps per epoch (per process); default 100 for
            segmentation, one pass over the training subjects for classification.
        lr: peak learning rate (AdamW).
        schedule: learning-rate decay over all steps: ``"cosine"``, ``"poly"`` (power
            0.9, nnU-Net's) or ``"constant"``.
        weight_decay: AdamW weight decay.
        amp: float16 mixed precision with a gradient scaler on CUDA (ignored elsewhere).
        val_fraction: fraction of subjects held out for validation (0: none), split
            by subject with ``seed``; stratified by label for classification.
        seed: fixes the split, the model's random layers, patches and augmentation.
        split_seed: draws the split instead of ``seed`` when set (``compare --seeds`` keeps
            one split while the seeds vary the rest).
        foreground_fraction: share of segmentation patches centred on a tumour voxel.
        augment: random flips, intensity scale/shift and small rotations/scaling.
        modality_dropout: probability per sample of zeroing a random subset of its sequences
            (at least one kept), so the model copes with a missing sequence; 0: off.
        resume: continue from ``out_dir/training_state.pt`` at the next epoch.
        overwrite: start again in an ``out_dir`` that holds a previous run.
        num_workers: data-loader worker processes (0: sample in the main process).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; under
            ``torchrun`` each process uses ``cuda:<LOCAL_RANK>`` when CUDA is asked for.
    """

    cohort: Path
    out_dir: Path
    task: Task = "segmentation"
    labels_csv: Path | None = None
    model: str = "tf_efficientnet_lite0"
    conv: Literal["acs", "3d"] = "acs"
    pretrained: bool | Path | None = None
    init: Path | None = None
    patch_size: tuple[int, int, int] | None = None
    batch_size: int = 2
    epochs: int = 10
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    schedule: Schedule = "cosine"
    weight_decay: float = 1e-5
    amp: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    split_seed: int | None = None
    foreground_fraction: float = 1 / 3
    augment: bool = True
    modality_dropout: float = 0.0
    resume: bool = False
    overwrite: bool = False
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.cohort = Path(self.cohort)
        self.out_dir = Path(self.out_dir)
        if self.labels_csv is not None:
            self.labels_csv = Path(self.labels_csv)
        if isinstance(self.pretrained, str):
            self.pretrained = Path(self.pretrained)
        if self.init is not None:
            self.init = Path(self.init)
        if self.patch_size is not None:
            self.patch_size = _patch_size(self.patch_size)
        checks = {
            "task": self.task in TASKS,
            "conv": self.conv in ("acs", "3d"),
            "schedule": self.schedule in SCHEDULES,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "steps_per_epoch": self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "lr": math.isfinite(self.lr) and self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "val_fraction": 0 <= self.val_fraction < 1,
            "foreground_fraction": 0 <= self.foreground_fraction <= 1,
            "modality_dropout": 0 <= self.modality_dropout <= 1,
            "num_workers": self.num_workers >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"FinetuneConfig: invalid {shown} (see FinetuneConfig's docstring)")
        deepest = math.prod(s // 32 for s in self.patch_size) if self.patch_size else 2
        if self.batch_size * deepest < 2:
            raise ValueError(
                f"FinetuneConfig: batch_size {self.batch_size} with patch_size {self.patch_size} leaves one "
                "value per channel at the encoder's deepest (1/32) level, where BatchNorm cannot train; "
                "use batch_size >= 2 or a larger patch_size"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings), as written to ``config.json``."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"FinetuneConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def _patch_size(value: int | tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    sizes = (int(value),) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(sizes) != 3 or any(s < 32 or s % 32 for s in sizes):
        raise ValueError(
            f"FinetuneConfig: patch_size must be one or three multiples of 32 (>= 32), got {value!r}"
        )
    return sizes  # type: ignore[return-value]


@dataclass
class FinetuneResult:
    """What :func:`~napari_acs.training.finetune` returns.

    Attributes:
        history: one dict per completed epoch (the rows of ``history.csv``).
        out_dir: the run folder.
        last_checkpoint: ``last.safetensors``: the model after the last completed
            epoch, or at the moment of cancelling; ``load_model`` reads it.
        best_checkpoint: ``best.safetensors``: the epoch with the best validation
            metric (``monitor``), or ``None`` without validation.
        monitor: the history column that picks the best epoch.
        epochs_completed: epochs finished (including those of a resumed run).
        cancelled: the run stopped on its cancel signal.
        warnings: problems worth telling the user (unmatched CSV rows or cases...).
        train_ids, val_ids: case ids of the split.
        model: the trained model (unwrapped from DistributedDataParallel).
    """

    history: list[dict[str, Any]]
    out_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    monitor: str | None
    epochs_completed: int
    cancelled: bool
    warnings: list[str] = field(default_factory=list)
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    model: nn.Module | None = None
