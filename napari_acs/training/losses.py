"""Training losses: Dice + BCE on the sigmoid WT/TC/ET region channels."""

from __future__ import annotations

from monai.losses import DiceLoss
from torch import Tensor, nn


class RegionLoss(nn.Module):
    """Soft Dice (over the whole batch, per region, as nnU-Net) plus binary cross-entropy.

    ``logits`` and ``target`` (N, 3, X, Y, Z); target channels are 0/1 WT, TC, ET
    masks. Computed in float32 (safe under autocast). Returns a scalar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        return self.dice(logits, target) + self.bce(logits, target)
