"""The ACS operator equals conv3d with the zero-padded k x k x k kernel on every path,
and acsconv's ACSConv wherever that operator is correct."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from acsconv.operators import ACSConv
from timm.layers.padding import get_same_padding
from torch import nn

from napari_acs.models.acs_conv import ACSConv3d, acs_conv3d, acs_kernel_3d, acs_split
from napari_acs.models.acs_paths import acs_paths

FORMATS = {"NCDHW": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def reference_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The dense ``(C_out, C_in/g, k, k, k)`` kernel, built channel by channel: output
    channel ``o`` holds its 2D kernel on plane k // 2 of the axis its third collapses."""
    c_out, _, k, _ = weight.shape
    thirds = [c_out // 3 + (i < c_out % 3) for i in range(3)]
    dense = weight.new_zeros(*weight.shape[:2], k, k, k)
    for o in range(c_out):
        axis = 0 if o < thirds[0] else 1 if o < thirds[0] + thirds[1] else 2
        index = [o, slice(None), slice(None), slice(None), slice(None)]
        index[2 + axis] = k // 2
        dense[tuple(index)] = weight[o]
    return dense


def reference_acs_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Ground truth, built independently of the operator: pad each axis as nn.Conv3d or
    timm's pad_same would, then F.conv3d with :func:`reference_kernel`."""
    k = weight.shape[-1]
    pads = []
    for n in reversed(x.shape[2:]):
        if padding == "same":
            total = get_same_padding(n, k, stride, dilation)
            pads += [total // 2, total - total // 2]
        else:
            pads += [0, 0] if padding == "valid" else [padding, padding]
    x = F.pad(x, pads, mode="constant" if padding_mode == "zeros" else padding_mode)
    return F.conv3d(x, reference_kernel(weight), bias, stride, 0, dilation, groups)


# (in, out, groups): out % 3 in {0, 1, 2}; depthwise; grouped with groups cut by the
# split; blocks >= 8 channels (the CPU channel-padding path); depthwise multiplier 2.
CHANNELS = {
    "dense-9": (6, 9, 1),
    "dense-10": (5, 10, 1),
    "dense-26": (8, 26, 1),
    "depthwise-7": (7, 7, 7),
    "depthwise-8": (8, 8, 8),
    "grouped-cut": (4, 20, 2),
    "grouped-3": (6, 12, 3),
    "multiplier-2": (4, 8, 4),
}


@pytest.mark.parametrize("channels", CHANNELS.values(), ids=CHANNELS.keys())
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7])
def test_matches_zero_padded_conv3d(k: int, channels: tuple[int, int, int]) -> None:
    c_in, c_out, groups = channels
    torch.manual_seed(k)
    x = torch.randn(1, c_in, 11, 10, 7, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, k, k, dtype=torch.float64)
    bias = torch.randn(c_out, dtype=torch.float64)
    checked = 0
    for stride, dilation, padding in itertools.product([1, 2, 4], [1, 2], ["natural", 0, "same"]):
        pad = dilation * (k // 2) if padding == "natural" else padding
        case = f"stride={stride} dilation={dilation} padding={pad}"
        try:
            expected = reference_acs_conv(x, weight, bias, stride, pad, dilation, groups)
        except RuntimeError:  # input smaller than the dilated kernel
            with pytest.raises(ValueError, match="too small"):
                acs_conv3d(x, weight, bias, stride, pad, dilation, groups)
            continue
        for name, fmt in FORMATS.items():
            out = acs_conv3d(x.contiguous(memory_format=fmt), weight, bias, stride, pad, dilation, groups)
            assert out.shape == expected.shape, f"{case} {name}"
            torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10, msg=f"{case} {name}")
            checked += 1
    assert checked >= 24


@pytest.mark.parametrize("padding", [1, "same"])
def test_155_slices_stride_2(padding: int | str) -> None:
    """BraTS depth: odd sizes with stride 2, dense and depthwise, float32 (oneDNN paths)."""
    x = torch.randn(1, 16, 155, 12, 11)
    for groups in (1, 16):
        weight = torch.randn(32 if groups == 1 else 16, 16 // groups, 3, 3)
        out = acs_conv3d(x, weight, None, 2, padding, 1, groups)
        assert out.shape[2:] == (78, 6, 6)
        for fmt in FORMATS.values():
            out = acs_conv3d(x.contiguous(memory_format=fmt), weight, None, 2, padding, 1, groups)
            expected = reference_acs_conv(x, weight, None, 2, padding, 1, groups)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode: str) -> None:
    x = torch.randn(1, 4, 9, 8, 7, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    for stride, padding in ((1, 1), (2, "same")):
        out = acs_conv3d(x, weight, None, stride, padding, padding_mode=mode)
        torch.testing.assert_close(out, reference_acs_conv(x, weight, None, stride, padding, padding_mode=mode))
    layer = ACSConv3d(4, 5, 3, padding=1, padding_mode=mode, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_acs_conv(x, layer.weight, layer.bias, 1, 1, padding_mode=mode))


GRAD_CASES = {
    "dense-26": (16, 26, 1, 3, 1, 1),
    "stem-few-inputs": (4, 10, 1, 3, 2, "same"),
    "depthwise-slices": (9, 9, 9, 3, 1, 1),
    "depthwise-stride2-same": (8, 8, 8, 5, 2, "same"),
    "grouped-cut": (4, 20, 2, 3, 2, 1),
    "even-kernel": (6, 8, 1, 4, 2, "same"),
}


@pytest.mark.parametrize("fmt", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("case", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_gradients_match_reference(case: tuple, fmt: torch.memory_format) -> None:
    c_in, c_out, groups, k, stride, padding = case
    torch.manual_seed(0)
    x = torch.randn(2, c_in, 11, 10, 9, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    weight = torch.randn(c_out, c_in // groups, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    expected = reference_acs_conv(x, weight, bias, stride, padding, 1, groups)
    probe = torch.randn_like(expected)
    want = torch.autograd.grad((expected * probe).sum(), (x, weight, bias))
    got = torch.autograd.grad((acs_conv3d(x, weight, bias, stride, padding, 1, groups) * probe).sum(), (x, weight, bias))
    for name, g, w in zip(("input", "weight", "bias"), got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=name)


def _matches_reference_with_gradients(x, weight, bias, stride, padding, dilation, groups, label: str) -> bool:
    """Output and input/weight/bias gradients equal the reference's; False where the input is
    smaller than the dilated kernel (nothing to compare)."""
    try:
        expected = reference_acs_conv(x, weight, bias, stride, padding, dilation, groups)
    except RuntimeError:
        return False
    got = acs_conv3d(x, weight, bias, stride, padding, dilation, groups)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    probe = torch.randn_like(expected)
    want = torch.autograd.grad((expected * probe).sum(), (x, weight, bias))
    have = torch.autograd.grad((got * probe).sum(), (x, weight, bias))
    for name, g, w in zip(("input", "weight", "bias"), have, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=f"{name} {label}")
    return True


@pytest.mark.parametrize("fmt", FORMATS.values(), ids=FORMATS.keys())
def test_depthwise_slices_gradients_everywhere(fmt: torch.memory_format) -> None:
    """The CPU depthwise path's own backward: strides that skip planes, dilation, padding
    wider than the kernel (output planes that read no input plane), asymmetric "same"."""
    torch.manual_seed(0)
    checked = 0
    with acs_paths(cpu_train="slices", cpu_train_cl="slices"):
        for k, stride, dilation, padding in itertools.product([2, 3, 5], [1, 2, 3], [1, 2], [0, "same", 3]):
            x = torch.randn(2, 7, 9, 8, 7, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
            weight = torch.randn(7, 1, k, k, dtype=torch.float64, requires_grad=True)
            bias = torch.randn(7, dtype=torch.float64, requires_grad=True)
            label = f"{k=} {stride=} {dilation=} {padding=}"
            checked += _matches_reference_with_gradients(x, weight, bias, stride, padding, dilation, 7, label)
    assert checked >= 40


@pytest.mark.parametrize("slabs", ["one slab", "a plane per slab"])
def test_plane_conv_gradients_everywhere(slabs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense CPU training parts (weight gradient with the flat axis first, a slab of
    planes at a time): strides, dilation, padding wider than the kernel, asymmetric
    "same", groups, and each of input-only, weight-only and bias-free gradients."""
    from napari_acs.models import acs_plane

    if slabs != "one slab":
        monkeypatch.setattr(acs_plane, "_COPY_BYTES", 1)
    calls = []
    apply = acs_plane.PlaneConv.apply
    monkeypatch.setattr(acs_plane.PlaneConv, "apply", lambda *a: calls.append(a[3]) or apply(*a))
    torch.manual_seed(0)
    checked = 0
    with acs_paths(cpu_train="parts", plane_grad=True):
        for k, stride, dilation, padding, groups in itertools.product([3, 4], [1, 2], [1, 2], [0, "same", 3], [1, 2]):
            x = torch.randn(2, 10, 9, 8, 7, dtype=torch.float64).requires_grad_()
            weight = torch.randn(14, 10 // groups, k, k, dtype=torch.float64, requires_grad=True)
            bias = torch.randn(14, dtype=torch.float64, requires_grad=True)
            label = f"{k=} {stride=} {dilation=} {padding=} {groups=}"
            checked += _matches_reference_with_gradients(x, weight, bias, stride, padding, dilation, groups, label)
        assert checked >= 30 and {1, 2} <= set(calls)
        x = torch.randn(1, 10, 7, 6, 5, dtype=torch.float64)
        weight = torch.randn(9, 10, 3, 3, dtype=torch.float64)
        for needs in ("input", "weight"):
            xi, wi = x.clone().requires_grad_(needs == "input"), weight.clone().requires_grad_(needs == "weight")
            out = acs_conv3d(xi, wi, None, 1, 1)
            probe = torch.randn_like(out)
            (have,) = torch.autograd.grad((out * probe).sum(), xi if needs == "input" else wi)
            ref = reference_acs_conv(xi, wi, None, 1, 1)
            (want,) = torch.autograd.grad((ref * probe).sum(), xi if needs == "input" else wi)
            torch.testing.assert_close(have, want, rtol=1e-9, atol=1e-9, msg=needs)


def _acsconv_is_correct(size: tuple[int, ...], out: tuple[int, ...], dilation: int, groups: int) -> bool:
    """acsconv 0.1.1 crops the input wherever the output is neither the input's size nor
    half of it; that crop ignores dilation and, for depthwise layers, pads all channels."""
    return all(o == n or 2 * o == n for n, o in zip(size, out)) or (dilation == 1 and groups == 1)


@pytest.mark.parametrize("channels", [(6, 9, 1), (5, 10, 1), (6, 8, 1), (7, 7, 7), (9, 9, 9)])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_matches_acsconv(k: int, channels: tuple[int, int, int]) -> None:
    c_in, c_out, groups = channels
    compared = 0
    for stride, dilation, size in itertools.product([1, 2, 3], [1, 2], [(11, 13, 9), (12, 12, 12)]):
        padding = dilation * (k // 2)
        theirs = ACSConv(c_in, c_out, k, stride, padding, dilation, groups).double()
        ours = ACSConv3d(c_in, c_out, k, stride, padding, dilation, groups, dtype=torch.float64)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(2, c_in, *size, dtype=torch.float64)
        expected = ours(x)
        if not _acsconv_is_correct(size, expected.shape[2:], dilation, groups):
            continue
        torch.testing.assert_close(expected, theirs(x), rtol=1e-10, atol=1e-10, msg=f"{stride=} {dilation=} {size=}")
        assert theirs.acs_kernel_split == ours.split
        compared += 1
    assert compared >= 6


def test_acsconv_quirks_are_documented() -> None:
    """Where acsconv 0.1.1 is wrong, ours follows the ground truth (see the module docstring)."""
    x = torch.randn(1, 6, 8, 9, 11, dtype=torch.float64)
    # even kernel, output half the input along X: acsconv takes plane 0 instead of k // 2
    theirs = ACSConv(6, 9, 2, stride=2).double()
    ours = ACSConv3d(6, 9, 2, stride=2, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    expected = reference_acs_conv(x, ours.weight, ours.bias, 2)
    torch.testing.assert_close(ours(x), expected)
    assert not torch.allclose(theirs(x), expected)
    # dilation with a cropped axis: acsconv's crop ignores dilation
    theirs = ACSConv(6, 9, 3, stride=2, padding=2, dilation=2).double()
    ours = ACSConv3d(6, 9, 3, stride=2, padding=2, dilation=2, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    expected = reference_acs_conv(x, ours.weight, ours.bias, 2, 2, 2)
    torch.testing.assert_close(ours(x), expected)
    assert not torch.allclose(theirs(x), expected)
    # depthwise with a cropped axis: acsconv pads all channels and fails
    theirs = ACSConv(6, 6, 3, stride=2, padding=1, groups=6).double()
    with pytest.raises(RuntimeError):
        theirs(x)
    ours = ACSConv3d(6, 6, 3, stride=2, padding=1, groups=6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference_acs_conv(x, ours.weight, ours.bias, 2, 1, 1, 6))


def test_split_and_dense_kernel() -> None:
    for c_out in range(1, 13):
        assert acs_split(c_out) == ACSConv(3, c_out, 3).acs_kernel_split
    weight = torch.randn(7, 2, 3, 3)
    dense = acs_kernel_3d(weight)
    assert dense.shape == (7, 2, 3, 3, 3)
    torch.testing.assert_close(dense[:3, :, 1], weight[:3])
    torch.testing.assert_close(dense[3:5, :, :, 1], weight[3:5])
    torch.testing.assert_close(dense[5:, :, :, :, 1], weight[5:])
    assert dense.abs().sum() == pytest.approx(weight.abs().sum().item(), rel=1e-6)


def test_dense_kernel_built_under_inference_mode_still_trains() -> None:
    """The cached placement index is a normal tensor: first use in inference, then training."""
    from napari_acs.models.acs_conv import _placement

    _placement.cache_clear()
    weight = torch.randn(10, 4, 3, 3, requires_grad=True)
    with torch.inference_mode():
        acs_kernel_3d(weight)
    acs_kernel_3d(weight).square().sum().backward()
    torch.testing.assert_close(weight.grad, 2 * weight.detach())


def test_module_shares_conv2d_parameters() -> None:
    conv = nn.Conv2d(6, 9, 3, stride=2, padding=1, groups=3).eval()
    layer = ACSConv3d.from_conv2d(conv)
    assert layer.weight is conv.weight and layer.bias is conv.bias
    assert not layer.training
    assert {k: v.shape for k, v in layer.state_dict().items()} == {k: v.shape for k, v in conv.state_dict().items()}
    assert repr(layer) == "ACSConv3d(6, 9, kernel_size=3, stride=2, padding=1, groups=3, split=(3, 3, 3))"
    x = torch.randn(1, 6, 7, 8, 9)
    torch.testing.assert_close(layer(x), reference_acs_conv(x, conv.weight, conv.bias, 2, 1, 1, 3))
    layer.weight.data.mul_(2)  # the same storage
    assert torch.equal(conv.weight, layer.weight)


def test_module_trains_and_keeps_dtype() -> None:
    layer = ACSConv3d(4, 8, 3, padding="same", bias=False)
    assert layer.bias is None and "bias=False" in repr(layer)
    x = torch.randn(2, 4, 5, 6, 7)
    valid = ACSConv3d(4, 8, 3, padding="valid")
    torch.testing.assert_close(valid(x), reference_acs_conv(x, valid.weight, valid.bias))
    layer(x).square().mean().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == (8, 4, 3, 3)
    for dtype in (torch.float64, torch.bfloat16):
        layer.to(dtype)
        assert layer(x.to(dtype)).dtype == dtype


@pytest.mark.parametrize("path", ["parts", "dense"])
@pytest.mark.parametrize("stride", [2, 3])
def test_strided_same_padding_leaves_the_last_planes_apart_in_inference(path: str, stride: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels-last inference with an excess of "same" padding after the input (even sizes,
    stride 2) computes the last output planes apart instead of padding the whole input."""
    import napari_acs.models.acs_conv as module

    calls = []
    apart = module._last_planes_apart
    monkeypatch.setattr(module, "_last_planes_apart", lambda *a: calls.append(1) or apart(*a))
    for (c_in, c_out, groups), k, shape in [((8, 8, 8), 3, (16, 13, 10)), ((6, 9, 1), 3, (10, 12, 9)),
                                            ((5, 5, 5), 5, (9, 8, 14)), ((4, 4, 4), 3, (3, 4, 2))]:
        x = torch.randn(1, c_in, *shape).contiguous(memory_format=torch.channels_last_3d)
        weight, bias = torch.randn(c_out, c_in // groups, k, k), torch.randn(c_out)
        with torch.inference_mode(), acs_paths(cpu_infer_cl=path):
            out = acs_conv3d(x, weight, bias, stride, "same", 1, groups)
        torch.testing.assert_close(out, reference_acs_conv(x, weight, bias, stride, "same", 1, groups),
                                   rtol=1e-5, atol=1e-4)
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert calls  # the shapes with an excess took that branch


def test_inference_output_keeps_the_input_memory_format() -> None:
    for groups, c_out in ((1, 26), (8, 8), (2, 10)):
        layer = ACSConv3d(8, c_out, 3, stride=2, padding=1, groups=groups)
        for fmt in FORMATS.values():
            with torch.no_grad():
                out = layer(torch.randn(1, 8, 12, 11, 10).contiguous(memory_format=fmt))
            assert out.is_contiguous(memory_format=fmt), (groups, fmt)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ACSConv3d.from_conv2d(nn.Conv2d(3, 6, (3, 5))), "kernel_size"),
        (lambda: ACSConv3d.from_conv2d(nn.Conv2d(3, 6, 3, stride=(1, 2))), "stride"),
        (lambda: ACSConv3d(3, 6, 3, padding="full"), "padding"),
        (lambda: ACSConv3d(3, 6, 3, groups=2), "divide"),
        (lambda: ACSConv3d(3, 6, 3)(torch.randn(1, 3, 8, 8)), r"\(N, C, X, Y, Z\)"),
        (lambda: ACSConv3d(3, 6, 3)(torch.randn(1, 4, 8, 8, 8)), "channels"),
        (lambda: ACSConv3d(3, 6, 5)(torch.randn(1, 3, 8, 8, 3)), "too small"),
        (lambda: acs_conv3d(torch.randn(1, 3, 5, 5, 5), torch.randn(6, 3, 3, 3), split=(3, 3, 1)), "split"),
    ],
)
def test_bad_arguments_raise(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.gpu
def test_cuda_half_matches_reference() -> None:
    layer = ACSConv3d(16, 32, 3, stride=2, padding="same").cuda().half()
    depthwise = ACSConv3d(16, 16, 3, padding=1, groups=16).cuda().half()
    x = torch.randn(2, 16, 21, 20, 19, device="cuda")
    for m, stride, padding, groups in ((layer, 2, "same", 1), (depthwise, 1, 1, 16)):
        out = m(x.half())
        assert out.dtype == torch.float16 and out.is_cuda
        expected = reference_acs_conv(x.double(), m.weight.double(), m.bias.double(), stride, padding, 1, groups)
        torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)
