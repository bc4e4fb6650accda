"""ACS convolution: one 2D ``k x k`` kernel reused as axial, coronal and sagittal 3D kernels.

Input and output are ``(N, C, X, Y, Z)``. The output channels are split into three
contiguous parts (:func:`acs_split`, the split of ``acsconv.operators.ACSConv``); the
first part uses the kernel placed as ``(1, k, k)`` (it collapses X: axial), the second
as ``(k, 1, k)`` (coronal), the third as ``(k, k, 1)`` (sagittal).

Reference semantics, in every case: the output equals ``F.conv3d`` with the dense
``k x k x k`` kernel of :func:`acs_kernel_3d` (zero except on plane ``k // 2`` of the
axis its output channel collapses) and the 3D stride, padding and dilation
``(s, s, s)``, ``(p, p, p)``, ``(d, d, d)``. "same" padding is timm's dynamic padding
(``timm.layers.pad_same``) computed for each of the three axes.

Groups: an output channel's plane is fixed by its position in ``[0, C_out)`` alone,
whatever its group (one global contiguous split). This is acsconv's rule for
``groups=1`` and for depthwise convolutions, extended unchanged to any ``groups``.

Differences from acsconv 0.1.1 (which this operator matches wherever it is correct):
for even kernels acsconv takes plane 0 instead of ``k // 2`` when the output is exactly
all or half of the input along an axis; on any other axis it crops the input in a way
that ignores dilation (wrong values) and, in depthwise layers, pads all channels (an
error); it supports neither general groups nor "same" padding.

Which implementation runs (one conv3d per part, one conv3d with the zero-filled kernel,
depthwise conv2d over slices) is fixed per layer when it is built or configured, by the
rule table of :mod:`napari_acs.models.acs_paths` (``layer.paths``, or ``paths=`` here).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_acs.models.acs_depthwise import DepthwiseSlices
from napari_acs.models.acs_paths import ACSPaths, LayerShape, chosen_paths
from napari_acs.models.acs_plane import PlaneConv
from napari_acs.models.memory_format import channels_last_weight, is_channels_last

Padding = int | str
"""An int (the same on every side of every axis), ``"same"`` or ``"valid"``."""


def acs_split(out_channels: int) -> tuple[int, int, int]:
    """Output channels per (axial, coronal, sagittal) part, as acsconv splits them."""
    n, rest = divmod(out_channels, 3)
    return (n + (rest > 0), n + (rest > 1), n)


def acs_kernel_3d(weight: torch.Tensor, split: Sequence[int] | None = None) -> torch.Tensor:
    """The dense ``(C_out, C_in/groups, k, k, k)`` kernel that defines the ACS convolution.

    ``weight`` is the 2D kernel ``(C_out, C_in/groups, k, k)``; each output channel's
    2D kernel sits on plane ``k // 2`` of the axis its part collapses, zeros elsewhere.
    Built by one scatter (one kernel launch forward, one gather backward).
    """
    k = _square_kernel(weight)
    split = _check_split(split, weight.shape[0])
    c_out, c_in = weight.shape[:2]
    index = _placement(k, split, weight.device)[:, None].expand(c_out, c_in, k * k)
    return weight.new_zeros(c_out, c_in, k**3).scatter(2, index, weight.flatten(2)).view(c_out, c_in, k, k, k)


@functools.lru_cache(maxsize=256)
def _placement(k: int, split: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """``(C_out, k * k)`` int64: where each output channel's taps go in the flattened ``k**3`` kernel."""
    with torch.inference_mode(False):  # a normal tensor even when first built under inference mode
        p, q = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
        c = k // 2
        planes = (c * k * k + p * k + q, p * k * k + c * k + q, p * k * k + q * k + c)  # (1,k,k), (k,1,k), (k,k,1)
        return torch.cat([plane.flatten().expand(n, k * k) for plane, n in zip(planes, split)]).to(device)


def acs_conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
    groups: int = 1,
    split: Sequence[int] | None = None,
    padding_mode: str = "zeros",
    *,
    paths: ACSPaths | None = None,
) -> torch.Tensor:
    """ACS convolution of ``x (N, C_in, X, Y, Z)`` with the 2D ``weight (C_out, C_in/groups, k, k)``.

    Returns ``(N, C_out, X', Y', Z')``, the sizes of ``F.conv3d`` with a ``k x k x k``
    kernel. ``padding_mode`` is ``"zeros"``, ``"reflect"``, ``"replicate"`` or
    ``"circular"`` (applied on all three axes, as ``nn.Conv3d`` does). ``paths``: which
    implementation runs (:mod:`napari_acs.models.acs_paths`; default: its rules for this
    layer shape, with any forced by an open ``acs_paths`` context). Every path gives the
    same numbers.
    """
    if x.dim() != 5:
        raise ValueError(f"ACS convolution expects (N, C, X, Y, Z) input, got shape {tuple(x.shape)}")
    k = _square_kernel(weight)
    split = _check_split(split, weight.shape[0])
    if weight.shape[1] * groups != x.shape[1] or weight.shape[0] % groups:
        raise ValueError(
            f"ACS convolution: input has {x.shape[1]} channels, weight {tuple(weight.shape)} "
            f"with groups={groups} expects {weight.shape[1] * groups}"
        )
    layer = LayerShape(x.shape[1], weight.shape[0], k, groups)
    paths = chosen_paths(layer) if paths is None else paths.for_layer(layer)
    pads = [_axis_padding(n, k, stride, dilation, padding) for n in x.shape[2:]]
    if padding_mode != "zeros" and any(before or after for before, after in pads):
        x = F.pad(x, pad_arg(pads), mode=padding_mode)
        pads = [(0, 0)] * 3
    sizes = [_out_size(n + sum(p), 0, k, stride, dilation) for n, p in zip(x.shape[2:], pads)]
    if min(sizes) < 1:
        raise ValueError(
            f"ACS convolution: input {tuple(x.shape[2:])} is too small for kernel {k}, "
            f"dilation {dilation}, padding {padding} (output {tuple(sizes)})"
        )
    cpu = x.device.type == "cpu"
    channels_last = is_channels_last(x)
    needs_grad = _needs_grad(x, weight, bias)
    path = paths.path(x.device.type, needs_grad, channels_last)
    if path == "slices" and k > 1:
        return DepthwiseSlices.apply(x, weight, bias, pads, k, stride, dilation, split, sizes)
    # Symmetric padding goes to the convolution; any asymmetric excess is padded once, or
    # (strided inference) given by the output's last planes, computed apart.
    sym = [min(left, right) for left, right in pads]
    excess = [(left - m, right - m) for (left, right), m in zip(pads, sym)]
    # CPU channels-last inference: channels-last kernels keep the output channels-last
    cl_inference = cpu and channels_last and not needs_grad
    cl_weight = channels_last_weight if cl_inference else _same
    plane_grad = (
        paths.plane_grad and cpu and needs_grad and not channels_last and not torch.is_autocast_enabled(x.device.type)
    )
    block = paths.channel_block if cl_inference else 1
    if k == 1:  # the three placements are the same 1 x 1 x 1 kernel
        kernel = cl_weight(weight.unsqueeze(2))
    elif path == "dense":
        kernel = cl_weight(acs_kernel_3d(weight, split))

    def conv(x: torch.Tensor, sym: list[int], sizes: list[int]) -> torch.Tensor:
        if k == 1 or path == "dense":
            out = F.conv3d(x, kernel, bias, stride, sym, dilation, groups)
            return _as_input(out, channels_last) if cpu or k == 1 else out
        return _parts(x, weight, bias, stride, sym, dilation, groups, split, sizes, channels_last, plane_grad, block)

    if not any(left or right for left, right in excess):
        return conv(x, sym, sizes)
    if cl_inference and stride > 1 and not any(left for left, _ in excess) and weight.shape[0] <= 2 * x.shape[1]:
        return _last_planes_apart(conv, x, sym, excess, sizes, k, stride, dilation)
    return conv(F.pad(x, pad_arg(excess)), sym, sizes)


def _last_planes_apart(
    conv: Callable[[torch.Tensor, list[int], list[int]], torch.Tensor],
    x: torch.Tensor,
    sym: list[int],
    excess: list[tuple[int, int]],
    sizes: list[int],
    k: int,
    stride: int,
    dilation: int,
) -> torch.Tensor:
    """A strided convolution whose "same" padding has an excess after the input, without
    padding the whole input: ``conv(x, sym, sizes)`` runs on ``x`` with the symmetric part
    only, which leaves out the last output planes along each axis with an excess; those
    are computed from the thin slab of input they read, padded, and written into the
    output. Worth it where the output is smaller than the input (a stride-2 depthwise layer:
    an eighth); the same numbers as padding first.
    """
    dims = x.shape[2:]
    inner = [_out_size(n, p, k, stride, dilation) for n, p in zip(dims, sym)]
    if min(inner) < 1:  # too small an input to leave planes out
        return conv(F.pad(x, pad_arg(excess)), sym, sizes)
    main = conv(x, sym, inner)
    out = torch.empty((x.shape[0], main.shape[1], *sizes), dtype=main.dtype, device=x.device,
                      memory_format=torch.channels_last_3d)
    out[:, :, : inner[0], : inner[1], : inner[2]] = main
    for axis in range(3):
        first = inner[axis]
        if first == sizes[axis]:
            continue
        start = first * stride - sym[axis]  # input plane the first left-out output window starts at
        span = (sizes[axis] - 1 - first) * stride + dilation * (k - 1) + 1
        slab = x.narrow(2 + axis, start, min(span, dims[axis] - start))
        pads = [(0, right) for _, right in excess]
        pads[axis] = (0, span - slab.shape[2 + axis])
        face_sym, face_sizes = list(sym), list(sizes)
        face_sym[axis], face_sizes[axis] = 0, sizes[axis] - first
        slab = F.pad(slab, pad_arg(pads)).contiguous(memory_format=torch.channels_last_3d)
        out.narrow(2 + axis, first, face_sizes[axis]).copy_(conv(slab, face_sym, face_sizes))
    return out


def _parts(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    sym: list[int],
    dilation: int,
    groups: int,
    split: tuple[int, int, int],
    sizes: list[int],
    channels_last: bool,
    plane_grad: bool,
    block: int,
) -> torch.Tensor:
    """The ``parts`` path: one conv3d per part (and per cut group), written into one output.

    ``x (N, C_in, X, Y, Z)`` is already padded by any asymmetric excess; ``sym`` is the
    symmetric padding left to the convolutions; ``sizes`` the output's spatial sizes;
    ``channels_last``: the caller's input layout; ``block``: output channels computed
    zero-padded to a multiple of it (1: none).
    """
    c_in, c_out, k = x.shape[1], weight.shape[0], weight.shape[-1]
    depthwise = groups == c_in == c_out
    needs_grad = _needs_grad(x, weight, bias)
    cl_weight = channels_last_weight if x.device.type == "cpu" and channels_last and not needs_grad else _same
    # Depthwise: each part reads its own input channels. One split (its backward is one
    # cat) instead of a slice per part (each slice's backward fills a full-size zero grad).
    chunks = x.split(split, dim=1) if depthwise else None
    pieces = []
    start = 0
    for axis, n in enumerate(split):
        if n:
            source = x if chunks is None else chunks[axis]
            x_axis, conv_pad = _collapse(source, axis, sym, sizes[axis], k, stride, dilation)
            blocks = _group_blocks(start, start + n, c_in, c_out, groups) if chunks is None else [(start, start + n, 0, n, n)]
            for lo, hi, in_lo, in_hi, g in blocks:
                x_in = x_axis if (in_lo, in_hi) == (0, source.shape[1]) else x_axis[:, in_lo:in_hi]
                w = weight[lo:hi]
                b = None if bias is None else bias[lo:hi]
                if plane_grad and axis:
                    pieces.append(PlaneConv.apply(x_in, w, b, axis, stride, conv_pad, dilation, g))
                else:
                    w = cl_weight(w.unsqueeze(2 + axis))
                    pieces.append(_conv(x_in, w, b, stride, conv_pad, dilation, g, block if g == 1 else 1))
        start += n
    if len(pieces) == 1:
        return pieces[0]
    if needs_grad:  # cat(out=...) has no autograd
        return torch.cat(pieces, 1)
    # Written into an output of the input's memory format: faster than cat's own
    # allocation, and channels-last survives parts that come back contiguous.
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    out = torch.empty((x.shape[0], c_out, *sizes), dtype=pieces[0].dtype, device=x.device, memory_format=fmt)
    return torch.cat(pieces, 1, out=out)


class ACSConv3d(nn.Module):
    """ACS convolution layer: the 2D ``weight (C_out, C_in/groups, k, k)`` applied in 3D.

    Parameters and ``state_dict`` keys are those of ``nn.Conv2d`` (``weight``, ``bias``);
    ``padding`` is an int, ``"same"`` (timm's dynamic same padding on each axis) or
    ``"valid"``. Input ``(N, C_in, X, Y, Z)``, output ``(N, C_out, X', Y', Z')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: Padding | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must divide by groups {groups}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _one_value(kernel_size, "kernel_size")
        self.stride = _one_value(stride, "stride")
        self.padding = padding if isinstance(padding, str) else _one_value(padding, "padding")
        if self.padding not in ("same", "valid") and not isinstance(self.padding, int):
            raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
        self.dilation = _one_value(dilation, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        self.split = acs_split(out_channels)
        self.paths: ACSPaths = chosen_paths(LayerShape(in_channels, out_channels, self.kernel_size, groups))
        """Which implementation runs in each situation; set again by ``acs_paths.configure_acs``."""
        factory = {"device": device, "dtype": dtype}
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, k, k, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        if self.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, padding: Padding | None = None) -> ACSConv3d:
        """An ACS layer sharing ``conv``'s weight and bias Parameters (not copies).

        ``padding`` overrides ``conv.padding`` (e.g. ``"same"`` for timm's ``Conv2dSame``).
        """
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding if padding is None else padding,
            conv.dilation,
            conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",
        )
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer.train(conv.training)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return acs_conv3d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self.split,
            self.padding_mode, paths=self.paths,
        )  # fmt: skip

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding!r}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", split={self.split}"


def _one_value(value: int | Sequence[int], name: str) -> int:
    """The single int of an int or of a pair of equal ints."""
    if isinstance(value, int):
        return value
    values = set(value)
    if len(values) != 1:
        raise ValueError(f"ACS convolution needs the same {name} on both 2D axes, got {tuple(value)}")
    return values.pop()


def _square_kernel(weight: torch.Tensor) -> int:
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"ACS convolution expects a square 2D kernel (C_out, C_in/groups, k, k), got {tuple(weight.shape)}")
    return weight.shape[3]


def _check_split(split: Sequence[int] | None, out_channels: int) -> tuple[int, int, int]:
    if split is None:
        return acs_split(out_channels)
    split = tuple(int(n) for n in split)
    if len(split) != 3 or min(split) < 0 or sum(split) != out_channels:
        raise ValueError(f"split {split} must be three counts summing to the {out_channels} output channels")
    return split


def same_padding(size: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one axis of ``size`` voxels for TF/timm "same" (``ceil(size / stride)`` outputs)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return (total // 2, total - total // 2)


def pad_arg(pads: Sequence[tuple[int, int]]) -> list[int]:
    """``F.pad``'s argument (last axis first) for (before, after) pads of the X, Y, Z axes."""
    return [p for pair in reversed(pads) for p in pair]


def _axis_padding(size: int, k: int, stride: int, dilation: int, padding: Padding) -> tuple[int, int]:
    """(before, after) zero padding of one axis of ``size`` voxels."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return same_padding(size, k, stride, dilation)
    return (padding, padding)


def _out_size(size: int, pad: int, k: int, stride: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _collapse(
    x: torch.Tensor, axis: int, sym: list[int], size: int, k: int, stride: int, dilation: int
) -> tuple[torch.Tensor, list[int]]:
    """The input planes the kernel's centre plane meets along ``axis``, and the conv padding.

    Output plane ``o`` reads input plane ``o * stride + dilation * (k // 2) - pad``.
    Returns a view (padded with zero planes only where that index leaves the input).
    """
    dim = 2 + axis
    first = dilation * (k // 2) - sym[axis]
    span = (size - 1) * stride + 1
    before = max(0, -first)
    after = max(0, first + span - x.shape[dim])
    if before or after:
        pads = [(0, 0)] * 3
        pads[axis] = (before, after)
        x = F.pad(x, pad_arg(pads))
        first += before
    if first or (x.shape[dim] - 1) // stride + 1 != size:
        x = x.narrow(dim, first, span)
    conv_pad = list(sym)
    conv_pad[axis] = 0
    return x, conv_pad


def _group_blocks(lo: int, hi: int, c_in: int, c_out: int, groups: int) -> list[tuple[int, int, int, int, int]]:
    """Convolutions computing output channels ``[lo, hi)``: (out_lo, out_hi, in_lo, in_hi, groups).

    Whole groups go to one grouped convolution; a group cut by the range's ends is
    computed on its own (groups=1 over that group's input channels).
    """
    if groups == 1:
        return [(lo, hi, 0, c_in, 1)]
    per_out, per_in = c_out // groups, c_in // groups
    blocks = []
    first_whole = -(-lo // per_out)  # first group starting at or after lo
    end_whole = hi // per_out  # groups before this one end at or before hi
    if first_whole > end_whole:  # the range lies inside one group
        g = lo // per_out
        return [(lo, hi, g * per_in, (g + 1) * per_in, 1)]
    if lo < first_whole * per_out:
        g = first_whole - 1
        blocks.append((lo, first_whole * per_out, g * per_in, (g + 1) * per_in, 1))
    if end_whole > first_whole:
        blocks.append(
            (first_whole * per_out, end_whole * per_out, first_whole * per_in, end_whole * per_in, end_whole - first_whole)
        )
    if hi > end_whole * per_out:
        g = end_whole
        blocks.append((end_whole * per_out, hi, g * per_in, (g + 1) * per_in, 1))
    return blocks


def _same(weight: torch.Tensor) -> torch.Tensor:
    return weight


def _as_input(out: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``out`` in the input's memory format (oneDNN returns small outputs contiguous)."""
    if channels_last and not is_channels_last(out):
        return out.contiguous(memory_format=torch.channels_last_3d)
    return out


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    pad: list[int],
    dilation: int,
    groups: int,
    block: int,
) -> torch.Tensor:
    """``F.conv3d`` with the output channels computed zero-padded to a multiple of ``block``.

    oneDNN computes output channels in blocks (8 wide with AVX2): a partial block runs
    a slow tail path, so a part of 22 channels can cost more than 24 (see acs_paths).
    """
    n = weight.shape[0]
    extra = -n % block
    if not extra:
        return F.conv3d(x, weight, bias, stride, pad, dilation, groups)
    weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, 0, 0, extra))
    bias = None if bias is None else F.pad(bias, (0, extra))
    return F.conv3d(x, weight, bias, stride, pad, dilation, groups)[:, :n]
