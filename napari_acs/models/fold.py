"""Batch norm folded into the convolution before it, one way, for inference.

An eval-mode batch norm is a per-channel affine map; when it reads a convolution's
output directly, scaling that convolution's weights and adding a bias gives the same
result without the extra pass over the activations (about a tenth of the default
preset's inference time, in both twins). Like timm's ``reparameterize_model``, the fold
works on a copy unless ``inplace=True``, and cannot be undone: the inference engine
(:class:`napari_acs.inference.Segmenter`) folds its own private copy once.

Which batch norm follows which convolution is found by running a small probe input
with hooks; the fold is kept only if the folded model gives the same output on the
probe (a convolution whose output is also used elsewhere, e.g. by a residual branch,
would make it differ; the model is then left unfolded, with a warning).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from napari_acs.models.acs_conv import ACSConv3d

_CONVS = (nn.Conv3d, ACSConv3d)
_PROBE_SIZE = 32  # voxels per axis: enough for five stride-2 stages


class AfterNorm(nn.Module):
    """What a folded batch norm still does: timm's norm-act layers keep their drop and activation."""

    def __init__(self, drop: nn.Module | None, act: nn.Module | None) -> None:
        super().__init__()
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` (a copy unless ``inplace``) with every eval-mode batch norm that directly
    follows a convolution folded into it; returns the folded model.

    The folded batch norms are replaced by :class:`AfterNorm` (or nothing), the
    convolutions get the scaled weights and a bias. Training-mode batch norms use batch
    statistics and are never folded. A model whose probe output changes is returned
    unfolded (with a ``RuntimeWarning``).
    """
    if not inplace:
        model = copy.deepcopy(model)
    convs = [m for m in model.modules() if isinstance(m, _CONVS)]
    if not convs:
        return model
    channels = getattr(model, "create_kwargs", {}).get("in_channels", convs[0].in_channels)
    probe = torch.randn(1, channels, *(_PROBE_SIZE,) * 3, generator=torch.Generator().manual_seed(0))
    probe = probe.to(next(model.parameters()).device)
    with torch.no_grad():
        pairs, expected = _follow(model, probe)
        if not pairs:
            return model
        undo = _fold(model, pairs)
        folded = model(probe)
        # rounding differs by ~1e-6 of the output's size; a wrong fold by its own size.
        # Scale at least 1: a classifier's single logit may lie near 0.
        scale = expected.abs().max().clamp_min(1.0)
        if ((folded - expected).abs().max() / scale) >= 1e-4:
            undo()
            warnings.warn("batch norm folding changed the model's output: running it unfolded",
                          RuntimeWarning, stacklevel=2)
    return model


def _follow(model: nn.Module, probe: torch.Tensor) -> tuple[list[tuple[nn.Module, nn.BatchNorm3d]], torch.Tensor]:
    """(convolution, batch norm) pairs where the batch norm's input is that convolution's output,
    and the model's output on ``probe``."""
    outputs: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    pairs: dict[nn.BatchNorm3d, nn.Module] = {}

    def after_conv(module, args, output):
        outputs[id(output)] = (module, output)  # keeps the tensor alive: ids stay unique

    def before_bn(module, args):
        hit = outputs.get(id(args[0]))
        if hit is not None and hit[1] is args[0]:
            pairs[module] = hit[0]

    handles = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, _CONVS)]
    handles += [m.register_forward_pre_hook(before_bn) for m in model.modules() if _foldable(m)]
    try:
        output = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    convs = list(pairs.values())
    return [(conv, bn) for bn, conv in pairs.items() if convs.count(conv) == 1], output


def _foldable(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.BatchNorm3d)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
    )


def _fold(model: nn.Module, pairs: list[tuple[nn.Module, nn.BatchNorm3d]]):
    """Fold ``pairs`` in place; returns a function that undoes it (used only when the check fails)."""
    parents = {child: (parent, name) for parent in model.modules() for name, child in parent.named_children()}
    saved = []
    for conv, bn in pairs:
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.weight is not None:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        old_weight, old_bias = conv.weight, conv.bias
        bias = shift if old_bias is None else old_bias * scale + shift
        conv.weight = nn.Parameter(old_weight * scale.view(-1, *(1,) * (old_weight.dim() - 1)), requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        parent, name = parents[bn]
        drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
        after = nn.Identity() if drop is None and act is None else AfterNorm(drop, act)
        setattr(parent, name, after.train(bn.training))
        saved.append((conv, old_weight, old_bias, parent, name, bn))

    def undo() -> None:
        for conv, weight, bias, parent, name, bn in reversed(saved):
            conv.weight = weight
            conv.register_parameter("bias", bias)
            setattr(parent, name, bn)

    return undo
