"""Inference-only speed-up: fold each batch norm into the convolution that feeds it.

``y = BN(conv(x))`` in eval mode is one convolution with rescaled weights and a
bias. Which convolution feeds which norm is read off one traced forward pass
(forward hooks, tensor identity), and the fused copy is checked against the
original on that input: a model whose result would change is returned unfused.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.converter import BatchNormAct3d

_CONVS = (nn.Conv3d, ACSConv3d)


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, norm name) pairs where the norm's input is exactly the conv's output."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, str] = {}
    consumers: dict[int, int] = {}
    pairs: list[tuple[str, str]] = []

    def after_conv(module, _inputs, output):
        produced[id(output)] = names[module]
        consumers[id(output)] = 0

    def before_module(module, inputs):
        for t in inputs:
            if isinstance(t, torch.Tensor) and id(t) in consumers:
                consumers[id(t)] += 1
                if isinstance(module, nn.BatchNorm3d):
                    pairs.append((produced[id(t)], names[module]))

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, _CONVS)]
    hooks += [m.register_forward_pre_hook(before_module) for m in model.modules()
              if isinstance(m, nn.BatchNorm3d) or not list(m.children())]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    used_once = {conv for conv, _ in pairs if sum(c == conv for c, _ in pairs) == 1}
    return [(c, b) for c, b in pairs if c in used_once]


def _fold(conv: nn.Module, bn: nn.BatchNorm3d) -> None:
    """Rescale ``conv``'s weights and bias so that ``conv`` alone computes ``bn(conv(x))``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    w = conv.weight
    conv.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift)


def _after_norm(bn: nn.BatchNorm3d) -> nn.Module:
    """What stays of a norm layer once its affine part lives in the conv."""
    if isinstance(bn, BatchNormAct3d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def fuse_conv_bn(model: nn.Module, example: torch.Tensor, *, atol: float = 1e-3) -> nn.Module:
    """A copy of ``model`` (eval mode) with conv + batch-norm pairs folded.

    ``example`` is a small input ``(N, C, X, Y, Z)`` used to find the pairs and to
    check the fused copy; if outputs differ by more than ``atol`` (relative to
    their scale) the original model is returned.
    """
    model = model.eval()
    fused = copy.deepcopy(model)
    pairs = _conv_bn_pairs(fused, example)
    if not pairs:
        return model
    modules = dict(fused.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            _fold(modules[conv_name], modules[bn_name])
            parent_name, _, attr = bn_name.rpartition(".")
            setattr(modules[parent_name] if parent_name else fused, attr, _after_norm(modules[bn_name]))
        ref, out = model(example), fused(example)
    if not torch.allclose(ref, out, atol=atol * float(ref.abs().max().clamp(min=1.0))):
        return model
    fused.fused_pairs = len(pairs)
    return fused
