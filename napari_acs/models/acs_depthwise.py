"""Depthwise ACS convolution on the CPU: each third as one depthwise conv2d over its slices.

A depthwise ACS part collapsing axis ``a`` is a 2D depthwise convolution of every
slice along ``a`` that the kernel's centre plane meets. Gathering those slices into
``(N, C * D, H, W)`` makes the part one depthwise ``conv2d`` (CPU depthwise conv2d
kernels run several times faster than depthwise conv3d, above all in backward).

:class:`DepthwiseSlices` is an autograd Function so that forward and backward each
touch the input once: the slices are gathered straight into a buffer that already
holds any asymmetric ("same") padding, the parts are written into one output, and
backward writes each part's input gradient into one gradient tensor. Done with
autograd ops instead, the padding, the channel split and the strided plane selection
each cost a full-size copy or zero fill in forward and again in backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from napari_acs.models.memory_format import is_channels_last

Pads = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class _Part:
    """One third: output channels ``[lo, hi)``, collapsing spatial axis ``axis`` (0, 1, 2)."""

    lo: int
    hi: int
    axis: int
    first: int  # input plane read by output plane 0 (may lie outside the input)
    valid: tuple[int, int]  # output planes [start, stop) whose input plane exists
    border: tuple[int, int, int, int]  # zero rows/columns the buffer adds: (H before, H after, W before, W after)
    conv_pad: tuple[int, int]  # symmetric padding left to conv2d

    @property
    def dim(self) -> int:
        return 2 + self.axis


def _parts(
    shape: Sequence[int], pads: Pads, k: int, stride: int, dilation: int, split: Sequence[int], sizes: Sequence[int]
) -> list[_Part]:
    parts, lo = [], 0
    for axis, n in enumerate(split):
        if n:
            first = dilation * (k // 2) - pads[axis][0]
            size, depth = sizes[axis], shape[2 + axis]
            start = min(-(first // stride) if first < 0 else 0, size)
            stop = max(min(size, (depth - 1 - first) // stride + 1), start)
            plane = [pads[a] for a in range(3) if a != axis]
            sym = tuple(min(p) for p in plane)
            border = (plane[0][0] - sym[0], plane[0][1] - sym[0], plane[1][0] - sym[1], plane[1][1] - sym[1])
            parts.append(_Part(lo, lo + n, axis, first, (start, stop), border, sym))  # type: ignore[arg-type]
        lo += n
    return parts


def _planes(x: torch.Tensor, part: _Part, stride: int) -> torch.Tensor:
    """The input planes read by the part's valid output planes, along ``part.dim`` (a view)."""
    start, stop = part.valid
    first = part.first + start * stride
    return x[:, part.lo : part.hi].narrow(part.dim, first, (stop - start - 1) * stride + 1)[
        (slice(None),) * part.dim + (slice(None, None, stride),)
    ]


def _interior(t: torch.Tensor, part: _Part) -> torch.Tensor:
    """``t (N, C, D, H', W')`` without the part's added border and invalid planes: ``(N, C, d, H, W)``."""
    hb, ha, wb, wa = part.border
    start, stop = part.valid
    return t[:, :, start:stop, hb : t.shape[3] - ha, wb : t.shape[4] - wa]


class DepthwiseSlices(torch.autograd.Function):
    """Depthwise ACS convolution ``x (N, C, X, Y, Z) -> (N, C, *sizes)`` (see the module docstring).

    ``pads`` are the (before, after) zero paddings of the three axes (any asymmetry),
    ``split`` the output channels per third, ``sizes`` the output's spatial sizes.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, pads, k, stride, dilation, split, sizes):  # noqa: D102
        parts = _parts(x.shape, pads, k, stride, dilation, split, sizes)
        fmt = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
        out = torch.empty((x.shape[0], x.shape[1], *sizes), dtype=x.dtype, device=x.device, memory_format=fmt)
        buffers = []
        for part in parts:
            channels = slice(part.lo, part.hi)
            planes = _gather(x, part, stride, sizes)
            y = _conv(planes, weight[channels], None if bias is None else bias[channels], part, stride, dilation)
            y = y.view(y.shape[0], part.hi - part.lo, -1, *y.shape[2:])  # (N, C, D, H_out, W_out)
            out[:, channels].copy_(y.movedim(2, part.dim))
            buffers.append(planes)
        ctx.save_for_backward(weight, *buffers)
        ctx.meta = (parts, stride, dilation, bias is not None, x.shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        weight, *buffers = ctx.saved_tensors
        parts, stride, dilation, has_bias, x_shape = ctx.meta
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            # every input element is read (stride 1, no plane skipped): no zero fill needed
            covered = all(p.first == 0 and stride == 1 and p.valid == (0, x_shape[p.dim]) for p in parts)
            new = torch.empty if covered else torch.zeros
            grad_x = new(x_shape, dtype=grad_out.dtype, device=grad_out.device)
        if need_w:
            grad_w = torch.empty_like(weight)
        if need_b:
            grad_b = grad_out.new_empty(weight.shape[0])
        for part, planes in zip(parts, buffers):
            n = part.hi - part.lo
            depth = planes.shape[1] // n
            g = grad_out[:, part.lo : part.hi].movedim(part.dim, 2)
            g = g.reshape(g.shape[0], n * depth, *g.shape[3:])
            gi, gw, gb = torch.ops.aten.convolution_backward(
                g, planes, weight[part.lo : part.hi].repeat_interleave(depth, 0),
                [n * depth] if has_bias else None, [stride] * 2, list(part.conv_pad), [dilation] * 2,
                False, [0, 0], n * depth, [need_x, need_w, need_b and has_bias],
            )  # fmt: skip
            if need_x and part.valid[1] > part.valid[0]:
                gi = gi.view(gi.shape[0], n, depth, *gi.shape[2:])
                _planes(grad_x, part, stride).copy_(_interior(gi, part).movedim(2, part.dim))
            if need_w:
                grad_w[part.lo : part.hi] = gw.view(n, depth, *gw.shape[1:]).sum(1)
            if need_b and has_bias:
                grad_b[part.lo : part.hi] = gb.view(n, depth).sum(1)
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


def _plane_shape(t: torch.Tensor, part: _Part) -> list[int]:
    return [s for d, s in enumerate(t.shape) if d >= 2 and d != part.dim]


def _gather(x: torch.Tensor, part: _Part, stride: int, sizes: Sequence[int]) -> torch.Tensor:
    """``(N, C_part * D, H', W')``: the planes each output plane reads, with the border zeros.

    A view of ``x`` where the planes already lie that way (e.g. the axial third at stride 1).
    """
    hb, ha, wb, wa = part.border
    h, w = _plane_shape(x, part)
    shape = (x.shape[0], part.hi - part.lo, sizes[part.axis], h + hb + ha, w + wb + wa)
    if not any(part.border) and part.valid == (0, sizes[part.axis]):
        return _planes(x, part, stride).movedim(part.dim, 2).reshape(shape[0], -1, *shape[3:])
    buffer = torch.zeros(shape, dtype=x.dtype, device=x.device)
    if part.valid[1] > part.valid[0]:
        _interior(buffer, part).copy_(_planes(x, part, stride).movedim(part.dim, 2))
    return buffer.flatten(1, 2)


def _conv(
    planes: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, part: _Part, stride: int, dilation: int
) -> torch.Tensor:
    """The part's depthwise conv2d: ``(N, C * D, H', W') -> (N, C * D, H_out, W_out)``."""
    depth = planes.shape[1] // weight.shape[0]
    return F.conv2d(
        planes,
        weight.repeat_interleave(depth, 0),
        None if bias is None else bias.repeat_interleave(depth),
        stride,
        part.conv_pad,
        dilation,
        planes.shape[1],
    )
