"""The converter mirrors timm code (napari_acs/models/converter.py): this guard fails, naming what
to re-check, when the timm sources it mirrors or relies on change.

timm is bounded (``timm>=1.0,<1.1`` in pyproject.toml) and pinned exactly in
requirements/lock.txt; a new version that passes this guard and tests/test_converter.py
needs no converter change. When a hash differs: compare the new upstream source with the
converter code named in the message, fix the converter if needed, run
tests/test_converter.py, then put the new hash here.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect

import pytest
import timm

#: ``module:name`` -> (first 16 hex digits of the sha256 of ``inspect.getsource``, what in
#: napari_acs/models/converter.py depends on it). Hashes of timm 1.0.31.
MIRRORED: dict[str, tuple[str, str]] = {
    "timm.models._efficientnet_blocks:SqueezeExcite": (
        "fa734f1b882df41f", "SqueezeExcite3d.forward repeats its forward with the squeeze over X, Y, Z "
        "(conv_reduce, act1, conv_expand, gate)"),
    "timm.layers.squeeze_excite:SEModule": (
        "1ed0fd0621d048f7", "SEModule3d.forward repeats its forward (add_maxpool, fc1, bn, act, fc2, gate)"),
    "timm.layers.squeeze_excite:EffectiveSEModule": (
        "0061f02170271344", "EffectiveSEModule3d.forward repeats its forward (add_maxpool, fc, gate)"),
    "timm.models.convnext:ConvNeXtBlock": (
        "65abda83a1cca8f6", "ConvNeXtBlock3d.forward repeats its forward with 5-d permutes "
        "(conv_dw, norm, mlp, gamma, drop_path, shortcut)"),
    "timm.models.vgg:ConvMlp": (
        "4f2190012f9857c6", "VggConvMlp3d.forward repeats its forward (input_kernel_size pooling, fc1, act1, "
        "drop, fc2, act2)"),
    "timm.layers.norm_act:BatchNormAct2d": (
        "1cf41e35467fd559", "BatchNormAct3d: nn.BatchNorm3d's forward, then drop and act, as BatchNormAct2d "
        "does; the _same_class rule keeps its attributes"),
    "timm.layers.norm:LayerNorm2d": (
        "0d9b7fd729784f1f", "LayerNorm3d.forward: F.layer_norm over channels at each voxel (the _fast_norm "
        "branch is not mirrored)"),
    "timm.layers.pool2d_same:MaxPool2dSame": (
        "250e73d683eeca6c", "MaxPool3dSame: -inf 'same' padding (_pad_same), then max pooling"),
    "timm.layers.pool2d_same:AvgPool2dSame": (
        "c916d41718007892", "AvgPool3dSame: zero 'same' padding (_pad_same), then average pooling"),
    "timm.layers.padding:pad_same": (
        "a70cda3eba54612b", "_pad_same and acs_conv.same_padding / pad_arg: timm's split of the 'same' "
        "padding (the smaller half before)"),
    "timm.layers.padding:get_same_padding": (
        "458deb4c0ea9c14d", "acs_conv.same_padding: the total 'same' padding of one axis"),
    "timm.layers.conv2d_same:Conv2dSame": (
        "2dca91199d1e4114", "the _conv_same rule (ACSConv3d / Conv3dSame with 'same' padding) and "
        "Conv3dSame.forward"),
    "timm.layers.conv2d_same:conv2d_same": (
        "d205bf4c55c39a2d", "Conv3dSame.forward and ACSConv3d 'same' padding: pad_same, then a conv with no padding"),
    "timm.layers.adaptive_avgmax_pool:AdaptiveAvgMaxPool2d": (
        "d2ccb047bd19bd4b", "AdaptiveAvgMaxPool3d: the mean of adaptive average and max pooling"),
    "timm.layers.adaptive_avgmax_pool:AdaptiveCatAvgMaxPool2d": (
        "050221f112b1765a", "AdaptiveCatAvgMaxPool3d: average and max pooling concatenated on channels"),
    "timm.layers.adaptive_avgmax_pool:FastAdaptiveAvgPool": (
        "09f4b868dd2fd8b2", "_fast_pool: its reduced dims live in .dim, (2, 3) becomes (2, 3, 4)"),
    "timm.layers.adaptive_avgmax_pool:FastAdaptiveMaxPool": (
        "b13d9a41d5feaae3", "_fast_pool: its reduced dims live in .dim, (2, 3) becomes (2, 3, 4)"),
    "timm.layers.adaptive_avgmax_pool:FastAdaptiveAvgMaxPool": (
        "b820669a4a646127", "_fast_pool: its reduced dims live in .dim, (2, 3) becomes (2, 3, 4)"),
    "timm.layers.adaptive_avgmax_pool:FastAdaptiveCatAvgMaxPool": (
        "d31c1e2a8354cc49", "_fast_pool: its reduced dims live in .dim_reduce, (2, 3) becomes (2, 3, 4)"),
    "timm.layers.adaptive_avgmax_pool:SelectAdaptivePool2d": (
        "1b3c276163e6271a", "_KEEP: it is kept as it is because its forward only calls its pool and flatten"),
    "timm.layers.mixed_conv2d:MixedConv2d": (
        "1a19730d17412ccc", "_KEEP: it is kept as it is because its forward only splits channels among its convs"),
}


def source_hash(name: str) -> str:
    """First 16 hex digits of the sha256 of ``module:attribute``'s source."""
    module, attribute = name.split(":")
    source = inspect.getsource(getattr(importlib.import_module(module), attribute))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_mirrored_timm_source_is_unchanged(name: str) -> None:
    pinned, depends = MIRRORED[name]
    found = source_hash(name)
    assert found == pinned, (
        f"timm {timm.__version__} changed {name} (source sha256 {found}..., pinned {pinned}...). "
        f"Re-check napari_acs/models/converter.py: {depends}. Then run tests/test_converter.py and "
        f"update MIRRORED in {__name__}.py."
    )


def test_converter_imports_are_the_pinned_ones() -> None:
    """Every timm class the converter maps has its source pinned above."""
    from napari_acs.models import converter

    used = {f"{c.__module__}:{c.__qualname__}" for c in [*converter._RULES, *converter._KEEP]
            if c.__module__.startswith("timm.")}
    assert used - set(MIRRORED) == set(), "pin these timm sources in MIRRORED too"
