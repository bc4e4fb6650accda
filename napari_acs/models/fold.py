"""Inference with batch norm folded into the convolution before it.

An eval-mode batch norm is a per-channel affine map; when it reads a convolution's
output directly, scaling that convolution's weights and adding a bias gives the same
result without the extra pass over the activations (about a tenth of the default
preset's inference time, in both twins).

Which batch norm follows which convolution is found once per model by running a small
probe input with hooks, and kept only if the folded model gives the same output on the
probe (a convolution whose output is also used elsewhere, e.g. by a residual branch,
would make it differ; the model then runs unfolded).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from napari_acs.models.acs_conv import ACSConv3d

_CONVS = (nn.Conv3d, ACSConv3d)
_PROBE_SIZE = 32  # voxels per axis: enough for five stride-2 stages
_CACHE = "_napari_acs_bn_folds"  # attribute holding the model's verified (conv, bn) pairs


@contextlib.contextmanager
def folded_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """While open, every eval-mode batch norm that directly follows a convolution is folded into it.

    For inference only (call ``model.eval()`` and move the model to its device first;
    run under ``torch.inference_mode`` or ``no_grad``). On exit the convolutions get their
    own weights and biases back and the batch norms run again, so training afterwards is
    unaffected.
    """
    pairs = _verified_pairs(model)
    saved = _fold(pairs)
    try:
        yield model
    finally:
        _unfold(saved)


def _verified_pairs(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm3d]]:
    cached = getattr(model, _CACHE, None)
    if cached is not None:
        return cached
    if model.training:  # training-mode batch norms use batch statistics: nothing to fold
        return []
    pairs: list[tuple[nn.Module, nn.BatchNorm3d]] = []
    convs = [m for m in model.modules() if isinstance(m, _CONVS)]
    if convs:
        channels = getattr(model, "create_kwargs", {}).get("in_channels", convs[0].in_channels)
        probe = torch.randn(1, channels, *(_PROBE_SIZE,) * 3, generator=torch.Generator().manual_seed(0))
        probe = probe.to(next(model.parameters()).device)
        with torch.inference_mode():
            found, expected = _follow(model, probe)
            if found:
                saved = _fold(found)
                try:
                    folded = model(probe)
                finally:
                    _unfold(saved)
                # rounding differs by ~1e-6 of the output's size; a wrong fold by its own size.
                # Scale at least 1: a classifier's single logit may lie near 0.
                scale = expected.abs().max().clamp_min(1.0)
                if ((folded - expected).abs().max() / scale) < 1e-4:
                    pairs = found
                else:
                    warnings.warn("batch norm folding changed the model's output: running it unfolded",
                                  RuntimeWarning, stacklevel=3)
    setattr(model, _CACHE, pairs)
    return pairs


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


def _fold(pairs: list[tuple[nn.Module, nn.BatchNorm3d]]) -> list[tuple]:
    saved = []
    with torch.no_grad():
        for conv, bn in pairs:
            scale = torch.rsqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.weight is not None:
                scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
            old_weight, old_bias = conv.weight.data, conv.bias
            bias = shift if old_bias is None else old_bias * scale + shift
            conv.weight.data = old_weight * scale.view(-1, *(1,) * (old_weight.dim() - 1))
            _set_bias(conv, bias)
            bn.forward = _after_norm(bn)
            saved.append((conv, bn, old_weight, old_bias))
    return saved


def _unfold(saved: list[tuple]) -> None:
    for conv, bn, weight, bias in reversed(saved):
        conv.weight.data = weight  # the very tensor (never an inference-mode copy)
        _set_bias(conv, bias)
        del bn.forward


def _set_bias(conv: nn.Module, bias: torch.Tensor | None) -> None:
    """Set ``conv.bias`` to a plain tensor (or back) without making a Parameter."""
    if "bias" in conv._parameters:  # nn.Conv3d registers bias=None as a parameter slot
        conv._parameters["bias"] = bias
    else:  # ACSConv3d(bias=False) holds a plain None attribute
        conv.__dict__["bias"] = bias


def _after_norm(bn: nn.BatchNorm3d):
    """What ``bn`` does after normalising: timm's norm-act layers keep their drop and activation."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if drop is None and act is None:
        return lambda x: x
    return lambda x: act(drop(x))
