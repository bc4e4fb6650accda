"""The two networks of the product: an encoder U-Net and an encoder classifier.

Both wrap a timm ``features_only`` encoder and are written dimension-agnostic:
built with 2D layers, they become 3D with ``convert_to_acs`` / ``convert_to_3d``.
Inputs are ``(N, C, X, Y, Z)`` once converted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_acs.models.decoder import UNetDecoder


class EncoderUNet(nn.Module):
    """Encoder + U-Net decoder + 1x1 head, logits upsampled to the input size.

    The head runs at the shallowest skip's resolution (stride 2 for most timm
    CNNs); its logits are upsampled (bi/trilinear) to the input grid, which
    saves a full-resolution decoder stage.
    Output: ``(N, num_classes, *input_spatial)`` logits (sigmoid per region).
    """

    def __init__(self, encoder: nn.Module, decoder_channels: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        channels = encoder.feature_info.channels()
        self.decoder = UNetDecoder(channels, decoder_channels[: len(channels) - 1])
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a few channels: interpolation is ~2.5x faster on contiguous than on channels-last memory
        logits = self.head(self.decoder(self.encoder(x))).contiguous()
        mode = "trilinear" if x.ndim == 5 else "bilinear"
        return F.interpolate(logits, size=x.shape[2:], mode=mode, align_corners=False)


class EncoderClassifier(nn.Module):
    """Encoder, global average pooling, dropout, linear: ``(N, num_classes)`` logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(encoder.feature_info.channels()[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        return self.fc(self.dropout(torch.flatten(self.pool(features), 1)))
