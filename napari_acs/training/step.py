"""One optimisation step, shared by the fine-tuning loop and the training benchmarks."""

from __future__ import annotations

import torch
from torch import nn


def train_step(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp: bool,
) -> torch.Tensor:
    """Forward (float16 autocast when ``amp``), loss in float32, backward through
    ``scaler``, optimizer update. ``x (N, C, X, Y, Z)``; returns the loss (0-d tensor)."""
    with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        logits = net(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss
