"""Training losses: Dice + BCE on the sigmoid WT/TC/ET region channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Added to the Dice numerator and denominator (MONAI's ``smooth_nr`` / ``smooth_dr`` default).
DICE_SMOOTH = 1e-5


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = DICE_SMOOTH) -> Tensor:
    """1 - soft Dice of ``sigmoid(logits)`` against 0/1 ``target`` (N, C, X, Y, Z), each channel's
    sums taken over the whole batch and all voxels (nnU-Net's batch Dice), averaged over the
    channels: MONAI's ``DiceLoss(sigmoid=True, batch=True)`` (tests/test_training.py checks it),
    written out because importing MONAI costs every training process ~3 s."""
    probabilities = torch.sigmoid(logits)
    dims = (0, *range(2, logits.ndim))
    intersection = (probabilities * target).sum(dims)
    total = probabilities.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * intersection + smooth) / (total + smooth)).mean()


class RegionLoss(nn.Module):
    """Soft Dice (over the whole batch, per region, as nnU-Net) plus binary cross-entropy.

    ``logits`` and ``target`` (N, 3, X, Y, Z); target channels are 0/1 WT, TC, ET
    masks. Computed in float32 (safe under autocast). Returns a scalar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        return soft_dice_loss(logits, target) + self.bce(logits, target)
