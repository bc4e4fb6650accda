"""One dense ACS part in CPU training, with its weight gradient taken with the flat axis first.

An ACS part collapsing spatial axis ``a`` is ``F.conv3d`` with its 2D ``(k, k)`` kernel
unsqueezed at ``2 + a``. oneDNN's weight gradient is about twice as fast when that flat
axis comes first (kernel ``(1, k, k)``): on this project's CPU, 48->16 channels at
2 x 48^3, 92 -> 47 ms for each of the coronal and sagittal parts, and faster for every
layer size measured, counting the copies (benchmarks/RESULTS_acs_operator.md).
:class:`PlaneConv` runs forward and the input gradient as the plain convolution and
computes the weight (and bias) gradient on copies of the input and of the part's output
gradient with that axis moved first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


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
        strides, dilations = [stride] * 3, [dilation] * 3
        backward = torch.ops.aten.convolution_backward
        if need_x:
            grad_x = backward(
                grad_out, x, weight.unsqueeze(2 + axis), None, strides, padding, dilations, False, [0, 0, 0], groups,
                [True, False, False],
            )[0]  # fmt: skip
        if need_w or need_b:
            moved_pad = [padding[axis]] + [p for a, p in enumerate(padding) if a != axis]
            _, grad_w, grad_b = backward(
                axis_first(grad_out, axis), axis_first(x, axis), weight.unsqueeze(2),
                [weight.shape[0]] if need_b else None, strides, moved_pad, dilations, False, [0, 0, 0], groups,
                [False, need_w, need_b],
            )  # fmt: skip
            grad_w = grad_w.squeeze(2) if need_w else None
        return grad_x, grad_w, grad_b, None, None, None, None, None
