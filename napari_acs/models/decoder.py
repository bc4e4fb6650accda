"""U-Net decoder over an encoder's skip features, written once for 2D and 3D.

The decoder is built from 2D layers and converted with the encoder (ACS or
native 3D), so both twins share one definition. ``forward`` never assumes a
number of spatial dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """3x3 conv, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DecoderBlock(nn.Module):
    """Upsample to the skip's size (nearest), concatenate, two conv-norm-act layers."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels + skip_channels, out_channels)
        self.conv2 = ConvNormAct(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class UNetDecoder(nn.Module):
    """Decode encoder features (shallow to deep) back to the shallowest skip's resolution.

    Args:
        encoder_channels: channels of each encoder feature map, shallow to deep.
        decoder_channels: widths of the decoder blocks, deep to shallow; one per skip
            (``len(encoder_channels) - 1``).
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        skips = list(encoder_channels[:-1])[::-1]
        if len(decoder_channels) != len(skips):
            raise ValueError(
                f"need {len(skips)} decoder widths for encoder channels {list(encoder_channels)}, "
                f"got {list(decoder_channels)}"
            )
        ins = [encoder_channels[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = block(x, skip)
        return x
