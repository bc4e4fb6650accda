"""Validation: whole held-out cases through the inference engine (segmentation), and
accuracy, balanced accuracy and ROC-AUC of held-out subjects (classification)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from napari_acs.inference.engine import Segmenter
from napari_acs.io.labels import REGIONS, regions_to_labels
from napari_acs.metrics import brats_metrics
from napari_acs.progress import CancelSignal, check_cancel
from napari_acs.training.cohort import ClassificationCase, SegmentationCase


def segmentation_scores(
    model: nn.Module,
    cases: Sequence[SegmentationCase],
    *,
    device: torch.device,
    amp: bool,
    cancel: CancelSignal = None,
) -> list[dict[str, float | str]]:
    """Per case ``{"case_id", "WT", "TC", "ET"}`` Dice of the whole cached brain crop.

    Predicted by one :class:`napari_acs.inference.Segmenter` (a prepared copy of ``model``,
    which is left as it is: mode, device, weights), ``roi_size="auto"`` as
    :func:`napari_acs.inference.segment` does, made consistent into labels and scored
    with :func:`napari_acs.metrics.brats_metrics`.
    """
    engine = Segmenter(model, device=device, amp=amp)
    scores = []
    for case in cases:
        probs = engine.predict_regions(case.image.astype(np.float32), cancel=cancel)
        pred = regions_to_labels(probs >= 0.5, case.convention)
        metrics = brats_metrics(pred, case.labels, case.spacing, case.convention, challenge=None)  # Dice only
        scores.append({"case_id": case.case_id, **{r: metrics[r]["dice"] for r in REGIONS}})
    return scores


def summarise_segmentation(scores: Sequence[dict]) -> dict[str, float]:
    """History columns ``val_dice_WT/TC/ET`` (mean over cases) and ``val_dice_mean``."""
    out = {f"val_dice_{r}": float(np.mean([s[r] for s in scores])) for r in REGIONS}
    out["val_dice_mean"] = float(np.mean([out[f"val_dice_{r}"] for r in REGIONS]))
    return out


def classification_outputs(
    model: nn.Module,
    cases: Sequence[ClassificationCase],
    *,
    device: torch.device,
    amp: bool,
    batch_size: int,
    cancel: CancelSignal = None,
) -> list[dict[str, float | str]]:
    """Per case ``{"case_id", "logit", "label"}`` of the held-out subjects."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(cases), batch_size):
            check_cancel(cancel, "validation")
            batch = cases[start : start + batch_size]
            x = torch.from_numpy(np.stack([c.image for c in batch]).astype(np.float32)).to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
                logits = model(x).float()[:, 0].cpu()
            out += [{"case_id": c.case_id, "logit": float(v), "label": c.label} for c, v in zip(batch, logits)]
    return out


def binary_metrics(probabilities: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> dict[str, float]:
    """``accuracy``, ``balanced_accuracy`` (mean of sensitivity and specificity) and ``auc``.

    A class absent from ``labels`` makes ``auc`` NaN and balanced accuracy the
    accuracy of the class present.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    pred = p >= threshold
    recalls = [float(np.mean(pred[y == c] == bool(c))) for c in (0, 1) if np.any(y == c)]
    auc = math.nan
    if len(recalls) == 2:
        auc = _auc(p, y)
    return {
        "accuracy": float(np.mean(pred == y.astype(bool))),
        "balanced_accuracy": float(np.mean(recalls)),
        "auc": auc,
    }


#: Bootstrap resamples of the AUC's confidence interval, and their fixed seed (reproducible).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def auc_interval(probabilities: Sequence[float], labels: Sequence[int], level: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC over subjects: ``resamples`` draws of the
    subjects with replacement (draws holding one class only are left out); ``(nan, nan)``
    when fewer than two subjects of either class."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if min(np.sum(y == 0), np.sum(y == 1)) < 2:
        return math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
    aucs = [_auc(p[d], y[d]) for d in draws if 0 < y[d].sum() < len(d)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half), both classes present."""
    positive, negative = p[y == 1], p[y == 0]
    greater = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(greater / (len(positive) * len(negative)))


def summarise_classification(outputs: Sequence[dict]) -> dict[str, float]:
    """History columns ``val_loss`` (BCE), ``val_accuracy``, ``val_balanced_accuracy``, ``val_auc``
    and its 95 % bootstrap interval over subjects ``val_auc_low`` / ``val_auc_high``."""
    logits = torch.tensor([o["logit"] for o in outputs], dtype=torch.float64)
    labels = torch.tensor([float(o["label"]) for o in outputs], dtype=torch.float64)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, labels))
    probabilities, classes = torch.sigmoid(logits).tolist(), labels.int().tolist()
    metrics = binary_metrics(probabilities, classes)
    metrics["auc_low"], metrics["auc_high"] = auc_interval(probabilities, classes)
    return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}
