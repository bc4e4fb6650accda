"""``create_model``: the one public factory for ACS and native-3D twins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from napari_acs.models.converter import convert_to_3d, convert_to_acs
from napari_acs.models.networks import EncoderClassifier, EncoderUNet
from napari_acs.models.registry import get_preset
from napari_acs.models.weights import create_timm_2d

Conv = Literal["acs", "3d"]
Task = Literal["segmentation", "classification"]
DEFAULT_CLASSES = {"segmentation": 3, "classification": 1}


def create_model(
    name: str,
    *,
    conv: Conv = "acs",
    task: Task = "segmentation",
    in_channels: int = 4,
    num_classes: int | None = None,
    pretrained: bool | str | Path | None = None,
    dropout: float = 0.2,
) -> nn.Module:
    """Build a 3D model from a preset or timm encoder name.

    Args:
        name: preset (see ``list_models()``) or any timm CNN with ``features_only``.
        conv: ``"acs"`` (2D kernels reused as axial/coronal/sagittal planes) or
            ``"3d"`` (the same architecture with native k x k x k convolutions).
        task: ``"segmentation"`` (U-Net, ``num_classes`` sigmoid region channels,
            default 3: WT, TC, ET) or ``"classification"`` (pooled logits, default 1).
        in_channels: input modalities (4 for T1, T1ce, T2, FLAIR); the ImageNet
            stem is adapted the timm way (repeat and rescale).
        pretrained: ImageNet weights for the encoder: ``True``, ``False`` or a local
            weight file. Default: ``True`` for ACS; ``False`` for 3D (from scratch).
            For ``conv="3d"``, pretrained weights are inflated (I3D style).

    Returns:
        A plain ``nn.Module`` taking ``(N, in_channels, X, Y, Z)``, with
        ``model.create_kwargs`` (rebuilds it) and ``model.preset``.
    """
    if conv not in ("acs", "3d"):
        raise ValueError(f"conv must be 'acs' or '3d', got {conv!r}")
    if task not in DEFAULT_CLASSES:
        raise ValueError(f"task must be one of {sorted(DEFAULT_CLASSES)}, got {task!r}")
    preset = get_preset(name)
    num_classes = DEFAULT_CLASSES[task] if num_classes is None else int(num_classes)
    if pretrained is None:
        pretrained = conv == "acs"

    timm_kwargs: dict = {"features_only": True, "in_chans": in_channels}
    encoder = create_timm_2d(preset.encoder, pretrained=pretrained, **timm_kwargs)
    if task == "segmentation":
        model: nn.Module = EncoderUNet(encoder, preset.decoder_channels, num_classes)
    else:
        model = EncoderClassifier(encoder, num_classes, dropout=dropout)

    if conv == "acs":
        convert_to_acs(model)
    else:
        convert_to_3d(model, inflate=bool(pretrained))

    model.preset = preset
    model.create_kwargs = {
        "name": name,
        "conv": conv,
        "task": task,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "dropout": dropout,
        "pretrained": False,  # a rebuilt model gets its weights from the checkpoint
    }
    return model
