"""Channels-last CPU inference gives the same numbers; only the engine's own copy is laid out."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from napari_acs.models import create_model
from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.memory_format import channels_last_weight, is_channels_last, to_channels_last


def test_channels_last_weight_keeps_values() -> None:
    for shape in [(8, 4, 3, 3, 3), (8, 4, 1, 1, 1), (8, 1, 1, 3, 3)]:
        w = torch.randn(shape)
        out = channels_last_weight(w)
        assert torch.equal(out, w)
        assert out.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("conv", ["acs", "3d"])
def test_channels_last_inference_matches_and_stays_channels_last(conv: str) -> None:
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", conv=conv, pretrained=False).eval().double()
    x = torch.randn(1, 4, 37, 42, 33, dtype=torch.float64)
    prepared = to_channels_last(copy.deepcopy(model))
    with torch.inference_mode():
        expected = model(x)
        seen: list[bool] = []
        convs = [m for m in prepared.modules() if isinstance(m, (nn.Conv3d, ACSConv3d))]
        hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(is_channels_last(a[0]))) for m in convs]
        out = prepared(x.contiguous(memory_format=torch.channels_last_3d))
        for h in hooks:
            h.remove()
    assert len(seen) == len(convs) and all(seen)  # no layer fell back to plain memory
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, nn.Conv3d))  # the original
