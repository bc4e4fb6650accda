"""Preset registry: a name maps to a frozen config that builds a model (timm style).

A preset names a timm encoder plus the choices that make it a BraTS model
(decoder widths, training patch size, normalisation). Any other timm CNN with
``features_only`` support can be used by name too; it gets default settings.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Preset:
    """How to build one encoder-decoder family.

    ``patch_size`` is in voxels ``(X, Y, Z)`` at 1 mm; ``decoder_channels`` lists
    the decoder widths from the deepest skip to the stride-2 level.
    """

    name: str
    encoder: str
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    normalisation: str = "zscore_brain"
    description: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored in checkpoints."""
        return asdict(self)


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset to the registry (names are unique)."""
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    """The preset called ``name``; any other timm CNN name gets default settings."""
    if name in _PRESETS:
        return _PRESETS[name]
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"unknown model {name!r}: not a napari-acs preset ({', '.join(sorted(_PRESETS))}) "
            "and not a timm model name"
        )
    return Preset(name=name, encoder=name, description="timm encoder with default settings")


def list_models(pattern: str = "*") -> list[str]:
    """Preset names matching a shell-style wildcard, sorted."""
    return sorted(n for n in _PRESETS if fnmatch.fnmatch(n, pattern))


for _preset in (
    Preset("tf_efficientnet_lite0", "tf_efficientnet_lite0",
           description="EfficientNet-Lite0 U-Net; the default and the demo model"),
    Preset("tf_efficientnet_lite1", "tf_efficientnet_lite1", description="EfficientNet-Lite1 U-Net"),
    Preset("tf_efficientnet_lite2", "tf_efficientnet_lite2", description="EfficientNet-Lite2 U-Net"),
    Preset("mobilenetv2_100", "mobilenetv2_100", description="MobileNetV2 1.0 U-Net"),
    Preset("resnet18", "resnet18", decoder_channels=(256, 128, 64, 32),
           description="ResNet-18 U-Net"),
    Preset("resnet34", "resnet34", decoder_channels=(256, 128, 64, 32),
           description="ResNet-34 U-Net (GaNDLF's ACS baseline architecture)"),
    Preset("efficientnet_b0", "efficientnet_b0", description="EfficientNet-B0 U-Net"),
    Preset("regnety_002", "regnety_002", description="RegNetY-200MF U-Net"),
    Preset("convnext_atto", "convnext_atto", decoder_channels=(160, 80, 40),
           description="ConvNeXt-Atto U-Net (stride-4 stem)"),
):
    register_preset(_preset)
