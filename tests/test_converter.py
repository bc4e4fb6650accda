"""convert_to_acs / convert_to_3d on real timm CNNs: exact 3D counterparts, shared weights,
layer-by-layer equality with the zero-padded conv3d, clear errors for what cannot convert, and a
whole-model oracle that checks every converted layer with code that is not the converter's.
(tests/test_converter_upstream.py guards the timm sources the converter mirrors.)"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from test_acs_conv import reference_acs_conv, reference_kernel
from timm.layers import (
    BatchNormAct2d,
    EffectiveSEModule,
    LayerNorm2d,
    SelectAdaptivePool2d,
    SEModule,
    create_conv2d,
    create_pool2d,
)
from timm.layers.padding import get_same_padding
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models.convnext import ConvNeXtBlock
from torch import nn

from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.converter import (
    BatchNormAct3d,
    EffectiveSEModule3d,
    LayerNorm3d,
    SEModule3d,
    SqueezeExcite3d,
    UnsupportedModuleError,
    convert_to_3d,
    convert_to_acs,
    find_2d_ops,
)

# Odd sizes that survive the stride-32 stages: padded convs need 17; unpadded
# downsampling (ConvNeXt's k=2 s=2 convs, DenseNet's and VGG's 2x2 pools) needs 32.
SMALL, LARGE = (19, 17, 21), (35, 33, 37)

MODELS = {
    "resnet18": ({}, SMALL),
    "resnet50": ({}, SMALL),
    "tf_efficientnet_lite0": ({}, SMALL),
    "efficientnet_b0": ({}, SMALL),
    "mobilenetv2_100": ({}, SMALL),
    "mobilenetv3_large_100": ({}, SMALL),
    "densenet121": ({}, LARGE),
    "regnety_002": ({}, SMALL),
    "convnext_atto": ({}, LARGE),
    "convnext_atto-conv_mlp": ({"conv_mlp": True}, LARGE),
    "vgg11_bn": ({}, LARGE),
}
HEAVY = {"resnet50", "densenet121"}
TWO_D_TYPES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.InstanceNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout2d,
    nn.UpsamplingBilinear2d,
    LayerNorm2d,
    BatchNormAct2d,
)
TWO_D_FORWARDS = (SqueezeExcite, SEModule, EffectiveSEModule, ConvNeXtBlock)  # exact types


def _left_in_2d(model: nn.Module) -> list[str]:
    return [
        f"{name}: {type(m).__name__}"
        for name, m in model.named_modules()
        if isinstance(m, TWO_D_TYPES)
        or type(m) in TWO_D_FORWARDS
        or ("2d" in type(m).__name__.lower() and type(m) is not SelectAdaptivePool2d)
    ]


def _dense_twin(model2d: nn.Module) -> nn.Module:
    """The network built another way: convert_to_3d, then each Conv3d gets the dense ACS kernel."""
    twin = convert_to_3d(copy.deepcopy(model2d))
    convs = dict(model2d.named_modules())
    with torch.no_grad():
        for name, m in twin.named_modules():
            if isinstance(m, nn.Conv3d):
                m.weight.copy_(reference_kernel(convs[name].weight))
                if m.bias is not None:
                    m.bias.copy_(convs[name].bias)
    return twin


def _check_each_acs_layer(model: nn.Module) -> tuple[list, list[str]]:
    """Forward hooks comparing every ACS layer's output with the reference on its own input."""
    failures: list[str] = []

    def check(layer: ACSConv3d, inputs: tuple, out: torch.Tensor) -> None:
        expected = reference_acs_conv(
            inputs[0], layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        scale = expected.abs().max().item()
        if out.shape != expected.shape or not torch.allclose(out, expected, rtol=1e-4, atol=1e-5 * scale):
            failures.append(f"{layer!r}: max error {(out - expected).abs().max().item():.3g} of {scale:.3g}")

    hooks = [m.register_forward_hook(check) for m in model.modules() if isinstance(m, ACSConv3d)]
    return hooks, failures


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name for name in MODELS]
)
def test_timm_encoder_converts_exactly(name: str) -> None:
    """In place, no 2D layer left, the same Parameters, every ACS layer equal to the
    zero-padded conv3d on its own input, the whole network equal to its dense twin,
    and no 2D operation at run time."""
    kwargs, size = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(name.split("-")[0], pretrained=False, features_only=True, **kwargs).eval()
    params = dict(model.named_parameters())
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    twin = _dense_twin(model)

    converted = convert_to_acs(model)

    assert converted is model  # in place
    assert _left_in_2d(converted) == []
    converted_params = dict(converted.named_parameters())
    assert converted_params.keys() == params.keys()
    assert all(p is params[n] for n, p in converted_params.items())  # the same Parameter objects
    assert sum(isinstance(m, ACSConv3d) for m in converted.modules()) == n_convs
    x = torch.randn(1, 3, *size)
    hooks, failures = _check_each_acs_layer(converted)
    with torch.no_grad():
        features = converted(x)
        expected = twin(x)
    for h in hooks:
        h.remove()
    assert failures == []
    assert len(hooks) == n_convs and all(f.dim() == 5 for f in features)
    for f, e in zip(features, expected, strict=True):
        torch.testing.assert_close(f, e, rtol=1e-3, atol=1e-4 * e.abs().max().item())
    assert find_2d_ops(converted, x) == []


@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "regnety_002", "convnext_atto"])
def test_timm_classifier_converts(name: str) -> None:
    """Heads too: global pooling over X, Y and Z, then the classifier."""
    model = timm.create_model(name, pretrained=False, num_classes=5).eval()
    twin = _dense_twin(model)
    convert_to_acs(model)
    assert _left_in_2d(model) == []
    x = torch.randn(2, 3, *MODELS[name][1])
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(logits, twin(x), rtol=1e-3, atol=1e-4)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert logits.shape == (2, 5)
    assert pooled.dim() == 2
    assert find_2d_ops(model, x) == []


SE_BLOCKS = {
    "efficientnet SqueezeExcite": lambda: SqueezeExcite(16, rd_ratio=0.25),
    "SEModule": lambda: SEModule(16, rd_ratio=0.25),
    "SEModule add_maxpool": lambda: SEModule(16, rd_ratio=0.25, add_maxpool=True),
    "EffectiveSEModule": lambda: EffectiveSEModule(16),
}


def _se_expected(block: nn.Module, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """x * gate(MLP(squeeze over ``dims``)), the 1x1 convs written as matrix products."""
    squeeze = x.mean(dims, keepdim=True)
    if getattr(block, "add_maxpool", False):
        squeeze = 0.5 * squeeze + 0.5 * x.amax(dims, keepdim=True)
    convs = [m for m in block.modules() if isinstance(m, ACSConv3d)]
    h = squeeze
    for i, conv in enumerate(convs):
        h = torch.einsum("oi,nixyz->noxyz", conv.weight[:, :, 0, 0], h) + conv.bias.view(1, -1, 1, 1, 1)
        if i < len(convs) - 1:
            h = torch.relu(h)
    return x * block.gate(h)


@pytest.mark.parametrize("make", SE_BLOCKS.values(), ids=SE_BLOCKS.keys())
def test_squeeze_excitation_averages_all_three_axes(make) -> None:
    block = convert_to_acs(make().eval())
    assert type(block).__name__.endswith("3d")
    x = torch.randn(2, 16, 5, 6, 7)
    x[:, :, 0] += 3.0  # slices differ, so a per-slice squeeze would differ from a global one
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, _se_expected(block, x, (2, 3, 4)))
        assert not torch.allclose(out, _se_expected(block, x, (3, 4)), atol=1e-3)
    assert find_2d_ops(block, x) == []


def test_norm_layers_keep_state_and_act() -> None:
    bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.3)
    bn_act = BatchNormAct2d(8, act_layer=nn.SiLU, drop_layer=nn.Dropout)
    ln = LayerNorm2d(8)
    model = nn.Sequential(bn, bn_act, ln, nn.GroupNorm(2, 8), nn.InstanceNorm2d(8, affine=True)).train()
    buffers = {n: b for n, b in model.named_buffers()}
    convert_to_acs(model)
    assert [type(m).__name__ for m in model] == [
        "BatchNorm3d",
        "BatchNormAct3d",
        "LayerNorm3d",
        "GroupNorm",
        "InstanceNorm3d",
    ]
    assert (model[0].eps, model[0].momentum, model[0].affine, model[0].track_running_stats) == (1e-3, 0.3, True, True)
    assert isinstance(model[1].act, nn.SiLU) and isinstance(model[1].drop, nn.Dropout)
    assert all(b is buffers[n] for n, b in model.named_buffers())
    x = torch.randn(2, 8, 4, 5, 6)
    model[0](x)
    assert buffers["0.num_batches_tracked"].item() == 1  # the 2D model's own buffer moved
    model.eval()
    with torch.no_grad():
        expected = F.silu(F.batch_norm(x, bn_act.running_mean, bn_act.running_var, bn_act.weight, bn_act.bias, eps=1e-5))
        torch.testing.assert_close(model[1](x), expected)
        expected = F.layer_norm(x.movedim(1, -1), (8,), ln.weight, ln.bias, 1e-6).movedim(-1, 1)
        torch.testing.assert_close(model[2](x), expected)


def _same_pads(x: torch.Tensor, k: int, s: int) -> list[int]:
    pads = []
    for n in reversed(x.shape[2:]):
        total = get_same_padding(n, k, s, 1)
        pads += [total // 2, total - total // 2]
    return pads


def test_pooling_layers() -> None:
    x = torch.randn(2, 4, 9, 8, 7)
    cases = [
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), F.max_pool3d(x, 3, 2, 1, ceil_mode=True)),
        (nn.AvgPool2d(2, count_include_pad=False), F.avg_pool3d(x, 2, count_include_pad=False)),
        (create_pool2d("max", 3, 2, padding="same"), F.max_pool3d(F.pad(x, _same_pads(x, 3, 2), value=-torch.inf), 3, 2)),
        (create_pool2d("avg", 3, 2, padding="same"), F.avg_pool3d(F.pad(x, _same_pads(x, 3, 2)), 3, 2)),
        (nn.AdaptiveAvgPool2d((2, 2)), F.adaptive_avg_pool3d(x, 2)),
        (nn.AdaptiveMaxPool2d(1), x.amax((2, 3, 4), keepdim=True)),
        (SelectAdaptivePool2d(pool_type="avg", flatten=True), x.mean((2, 3, 4))),
        (SelectAdaptivePool2d(pool_type="fast", flatten=True), x.mean((2, 3, 4))),
        (SelectAdaptivePool2d(pool_type="max"), x.amax((2, 3, 4), keepdim=True)),
        (SelectAdaptivePool2d(pool_type="avgmax"), 0.5 * (x.mean((2, 3, 4), keepdim=True) + x.amax((2, 3, 4), keepdim=True))),
        (SelectAdaptivePool2d(pool_type="catavgmax", flatten=True), torch.cat([x.mean((2, 3, 4)), x.amax((2, 3, 4))], 1)),
    ]
    for layer, expected in cases:
        converted = convert_to_acs(convert_to_acs(layer))  # twice: the second changes nothing
        torch.testing.assert_close(converted(x), expected, msg=repr(converted))
        assert find_2d_ops(converted, x) == [], repr(converted)


def test_upsampling_and_dropout() -> None:
    x = torch.randn(1, 3, 4, 5, 6)
    model = convert_to_acs(
        nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.UpsamplingBilinear2d(scale_factor=2),
            nn.UpsamplingNearest2d(size=(7, 7)),
            nn.Dropout2d(0.3),
        ).eval()
    )
    assert isinstance(model[3], nn.Dropout3d) and model[3].p == 0.3
    expected = F.interpolate(x, scale_factor=2, mode="trilinear")
    expected = F.interpolate(expected, scale_factor=2, mode="trilinear", align_corners=True)
    torch.testing.assert_close(model(x), F.interpolate(expected, size=7, mode="nearest"))
    torch.testing.assert_close(convert_to_acs(model)(x), model(x))  # converting again changes nothing
    with pytest.raises(UnsupportedModuleError, match="size"):
        convert_to_acs(nn.Sequential(nn.Upsample(size=(4, 8))))


def test_weights_shared_mode_dtype_and_hooks_kept() -> None:
    model = timm.create_model("resnet18", pretrained=False, features_only=True).double().train()
    model.layer2.eval()
    calls = []
    model.conv1.register_forward_hook(lambda *_: calls.append("conv1"))
    weight = model.conv1.weight
    modes = {n: m.training for n, m in model.named_modules()}
    convert_to_acs(model)
    assert model.conv1.weight is weight
    assert {n: m.training for n, m in model.named_modules()} == modes
    out = model(torch.randn(2, 3, 17, 19, 21, dtype=torch.float64))
    assert out[-1].dtype == torch.float64
    assert calls == ["conv1"]
    before = dict(model.named_modules())
    convert_to_acs(model)  # converting again changes nothing
    assert all(m is before[n] for n, m in model.named_modules())


class _SliceMean(nn.Module):
    """A module whose forward squeezes only two spatial axes: 2D-only code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.mean((2, 3), keepdim=True)


class _OwnConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (_SliceMean(), r"blocks\.1 \(test_converter\._SliceMean\).*2D-only code: forward: \(2, 3\)"),
        (nn.ConvTranspose2d(4, 4, 2), r"blocks\.1 \(torch\.nn\.modules\.conv\.ConvTranspose2d\)"),
        (nn.ZeroPad2d(1), r"blocks\.1 \(torch\.nn\.modules\.padding\.ZeroPad2d\)"),
        (_OwnConv(4, 4, 3), r"blocks\.1 .*own forward"),
        (nn.Conv2d(4, 4, (1, 3)), r"blocks\.1 .*kernel_size.*\(1, 3\)"),
        (create_conv2d(4, 4, 3, num_experts=2), r"blocks\.1 \(timm\.layers\.cond_conv2d\.CondConv2d\)"),
    ],
)
def test_unconvertible_module_raises_and_changes_nothing(layer: nn.Module, message: str) -> None:
    model = nn.Sequential()
    model.add_module("blocks", nn.Sequential(nn.Conv2d(4, 4, 3), layer, nn.BatchNorm2d(4)))
    with pytest.raises(UnsupportedModuleError, match=message):
        convert_to_acs(model)
    assert type(model.blocks[0]) is nn.Conv2d and type(model.blocks[2]) is nn.BatchNorm2d


def test_timm_create_conv2d_outputs() -> None:
    """timm's conv factory: plain, dynamic "same" (Conv2dSame) and mixed kernel sizes."""
    x = torch.randn(1, 8, 9, 10, 11)
    for conv in (
        create_conv2d(8, 12, 3, stride=2, padding="same"),
        create_conv2d(8, 12, 3, padding="same"),
        create_conv2d(8, 8, 3, stride=2, padding="same", depthwise=True),
    ):
        padding = "same" if type(conv).__name__ == "Conv2dSame" else conv.padding[0]
        expected = reference_acs_conv(x, conv.weight, conv.bias, conv.stride[0], padding, 1, conv.groups)
        torch.testing.assert_close(convert_to_acs(conv)(x), expected)
    mixed = create_conv2d(8, 8, [3, 5], padding="")
    expected = torch.cat(
        [reference_acs_conv(xs, c.weight, c.bias, 1, c.padding[0]) for xs, c in zip(x.split(mixed.splits, 1), mixed.values())],
        1,
    )
    torch.testing.assert_close(convert_to_acs(mixed)(x), expected)


def test_find_2d_ops_names_the_module() -> None:
    model = nn.Sequential(nn.Identity(), _SliceMean())
    assert find_2d_ops(model, torch.randn(1, 2, 3, 4, 5)) == ["1 (_SliceMean): mean over dims (2, 3)"]


def test_convert_to_3d_is_the_same_architecture_with_k3_kernels() -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True).eval()
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    bn_weight = model.bn1.weight
    acs = convert_to_acs(copy.deepcopy(model))
    native = convert_to_3d(model)
    assert native.bn1.weight is bn_weight
    for name, conv in convs.items():
        layer = native.get_submodule(name)
        k = conv.kernel_size[0]
        assert type(layer).__name__ == ("Conv3dSame" if type(conv).__name__ == "Conv2dSame" else "Conv3d")
        assert layer.weight.shape == (*conv.weight.shape[:2], k, k, k)
        assert (layer.stride, layer.dilation, layer.groups) == ((conv.stride[0],) * 3, (conv.dilation[0],) * 3, conv.groups)
        # PyTorch's default initialisation for the 3D fan-in, not the 2D weights
        assert layer.weight.abs().max() <= (conv.weight[0].numel() * k) ** -0.5
    x = torch.randn(1, 3, 19, 17, 21)
    with torch.no_grad():
        assert [f.shape for f in native(x)] == [f.shape for f in acs(x)]
    assert find_2d_ops(native, x) == []
    n_acs = sum(p.numel() for p in acs.parameters())
    n_3d = sum(p.numel() for p in native.parameters())
    assert n_3d > n_acs


def test_inflate_repeats_the_2d_kernel_along_x() -> None:
    conv = create_conv2d(4, 6, 3, stride=1, padding="")
    inflated = convert_to_3d(nn.Sequential(conv), inflate=True)[0]
    torch.testing.assert_close(inflated.weight, conv.weight.unsqueeze(2).expand(-1, -1, 3, -1, -1) / 3)
    torch.testing.assert_close(inflated.bias, conv.bias)
    # an input constant along X: away from the X borders, each plane is the 2D conv of the slice
    image = torch.randn(1, 4, 10, 11)
    volume = image.unsqueeze(2).expand(-1, -1, 7, -1, -1)
    with torch.no_grad():
        out = inflated(volume)
        torch.testing.assert_close(out[:, :, 1:-1], conv(image).unsqueeze(2).expand(-1, -1, 5, -1, -1))


# ---------------------------------------------------------------------------- whole-model oracle

#: Converted classes whose forward mirrors a timm 2D class's forward, and that class (upstream code).
UPSTREAM = {
    SqueezeExcite3d: SqueezeExcite,
    SEModule3d: SEModule,
    EffectiveSEModule3d: EffectiveSEModule,
    BatchNormAct3d: BatchNormAct2d,
    LayerNorm3d: LayerNorm2d,
}
ORACLE_MODELS = ("tf_efficientnet_lite0", "resnet18", "mobilenetv3_large_100", "regnety_002")


def _is_2d(module: nn.Module) -> bool:
    return isinstance(module, TWO_D_TYPES) or type(module) in TWO_D_FORWARDS or "2d" in type(module).__name__.lower()


def _upstream_on_voxels(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's own 2D forward on ``x (N, C, X, Y, Z)`` with the voxels laid out along one axis:
    (N, C, X*Y*Z, 1) for per-voxel layers, (N, C, X*Y*Z, 1, 1) for squeeze-excitation (its
    1x1 convolutions are ACS layers by now); a 2-axis mean there is the mean over all voxels."""
    n, c, *spatial = x.shape
    has_convs = any(isinstance(m, ACSConv3d) for m in layer.modules())
    flat = x.reshape(n, c, -1, 1, 1) if has_convs else x.reshape(n, c, -1, 1)
    return UPSTREAM[type(layer)].forward(layer, flat).reshape(n, c, *spatial)


@pytest.mark.parametrize("name", ORACLE_MODELS)
def test_whole_model_oracle_checks_every_converted_layer(name: str) -> None:
    """A real forward of the converted encoder in float64, every converted layer checked on its own
    input by code that is not the converter's: each ACS convolution against F.conv3d with the
    zero-embedded kernel (test_acs_conv's channel-by-channel reference, "same" padding by timm's
    get_same_padding), each layer whose forward the converter copied from timm against timm's own
    forward; every 2D layer type of the source model is gone."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, features_only=True).eval().double()
    source_2d = {type(m) for m in model.modules() if _is_2d(m)}
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    convert_to_acs(model)
    assert source_2d and {type(m) for m in model.modules()} & source_2d <= {SelectAdaptivePool2d}
    assert [n for n, m in model.named_modules() if _is_2d(m) and type(m) is not SelectAdaptivePool2d] == []

    mirrored = {cls3d for cls3d, cls2d in UPSTREAM.items() if any(issubclass(t, cls2d) for t in source_2d)}
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []  # copies: later in-place activations
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append((m, args[0].clone(), out.clone())))
             for m in model.modules() if isinstance(m, (ACSConv3d, *UPSTREAM))]
    with torch.no_grad():
        model(torch.randn(1, 3, *SMALL, dtype=torch.float64))
        for h in hooks:
            h.remove()
        failures = []
        for layer, x, out in seen:
            if isinstance(layer, ACSConv3d):
                expected = reference_acs_conv(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                              layer.dilation, layer.groups)
            else:
                expected = _upstream_on_voxels(layer, x)
            if out.shape != expected.shape or not torch.allclose(out, expected, rtol=1e-9, atol=1e-12):
                failures.append(f"{layer!r}: max error {(out - expected).abs().max().item():.3g}")
    assert failures == []
    assert len({id(m) for m, *_ in seen if isinstance(m, ACSConv3d)}) == n_convs  # every convolution ran
    assert {type(m) for m, *_ in seen} == {ACSConv3d, *mirrored}  # and every copied forward
