"""One dense ACS part in CPU training, with its weight gradient taken with the flat axis first.

An ACS part collapsing spatial axis ``a`` is ``F.conv3d`` with its 2D ``(k, k)`` kernel
unsqueezed at ``2 + a``. With AVX2 (Zen 1), oneDNN's weight gradient is about twice as
fast when that flat axis comes first (kernel ``(1, k, k)``): 48->16 channels at
2 x 48^3, 92 -> 47 ms for each of the coronal and sagittal parts, and faster for every
layer size measured, counting the copies (benchmarks/RESULTS_acs_operator.md). With
AVX-512 every orientation costs the same, so the rules of :mod:`napari_acs.models.acs_paths`
use this path on AVX2 CPUs only, and only for NCDHW inputs.
:class:`PlaneConv` runs forward and the input gradient as the plain convolution and
computes the weight (and bias) gradient on copies of the input and of the part's output
gradient with that axis moved first, a slab of planes at a time so that backward needs at
most ``_COPY_BYTES`` more memory (the kernel is flat along that axis: slabs are independent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_COPY_BYTES = 32 * 2**20


def axis_first(t: torch.Tensor, axis: int) -> torch.Tensor:
    """``t (N, C, X, Y, Z)`` with spatial axis ``axis`` moved first, as a contiguous copy."""
    others = [d for d in (2, 3, 4) if d != 2 + axis]
    return t.permute(0, 1, 2 + axis, *others).contiguous()


class PlaneConv(torch.autograd.Function):
    """``F.conv3d(x, weight.unsqueeze(2 + axis), bias, ...)`` for a 2D ``weight (C_out, C_in/groups, k, k)``.

    ``padding`` is the per-axis list ``[X, Y, Z]``; ``stride`` and ``dilation`` are ints.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, axis, stride, padding, dilation, groups):  # noqa: D102
        ctx.save_for_backward(x, weight)
        ctx.meta = (axis, stride, list(padding), dilation, groups, bias is not None)
        return F.conv3d(x, weight.unsqueeze(2 + axis), bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        axis, stride, padding, dilation, groups, has_bias = ctx.meta
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and has_bias
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight.unsqueeze(2 + axis), None, [stride] * 3, padding, [dilation] * 3, False, [0, 0, 0],
                groups, [True, False, False],
            )[0]  # fmt: skip
        if need_w or need_b:
            grad_w, grad_b = _weight_grad(grad_out, x, weight, axis, stride, padding, dilation, groups, need_w, need_b)
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _weight_grad(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    axis: int,
    stride: int,
    padding: list[int],
    dilation: int,
    groups: int,
    need_w: bool,
    need_b: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weight and bias gradients, summed over slabs of output planes along ``axis``.

    Output plane ``o`` reads input plane ``o * stride`` along ``axis`` (kernel 1, no padding there).
    """
    dim = 2 + axis
    plane_bytes = x.numel() // x.shape[dim] * x.element_size() * stride
    step = max(1, _COPY_BYTES // max(plane_bytes, 1))
    moved_pad = [padding[axis]] + [p for a, p in enumerate(padding) if a != axis]
    grad_w = grad_b = None
    for first in range(0, grad_out.shape[dim], step):
        n = min(step, grad_out.shape[dim] - first)
        _, gw, gb = torch.ops.aten.convolution_backward(
            axis_first(grad_out.narrow(dim, first, n), axis),
            axis_first(x.narrow(dim, first * stride, (n - 1) * stride + 1), axis),
            weight.unsqueeze(2), [weight.shape[0]] if need_b else None, [stride] * 3, moved_pad, [dilation] * 3,
            False, [0, 0, 0], groups, [False, need_w, need_b],
        )  # fmt: skip
        if need_w:
            grad_w = gw if grad_w is None else grad_w.add_(gw)
        if need_b:
            grad_b = gb if grad_b is None else grad_b.add_(gb)
    return (grad_w.squeeze(2) if need_w else None), grad_b
