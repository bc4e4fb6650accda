"""Channels-last CPU inference gives the same numbers and leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_acs.models import create_model
from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.memory_format import channels_last_inference, channels_last_weight, is_channels_last


def test_channels_last_weight_keeps_values() -> None:
    for shape in [(8, 4, 3, 3, 3), (8, 4, 1, 1, 1), (8, 1, 1, 3, 3)]:
        w = torch.randn(shape)
        out = channels_last_weight(w)
        assert torch.equal(out, w)
        assert out.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("conv", ["acs", "3d"])
def test_channels_last_inference_matches_and_restores(conv: str) -> None:
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", conv=conv, pretrained=False).eval().double()
    x = torch.randn(1, 4, 37, 42, 33, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        expected = model(x)
        seen: list[bool] = []
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv3d, ACSConv3d))]
        hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(is_channels_last(a[0]))) for m in convs]
        with channels_last_inference(model):
            out = model(x.contiguous(memory_format=torch.channels_last_3d))
        for h in hooks:
            h.remove()
    assert len(seen) == len(convs) and all(seen)  # no layer fell back to plain memory
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert all(not m._forward_hooks for m in convs)
    assert all(m.weight.is_contiguous() for m in convs)  # layout given back
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_training_works_after_channels_last_inference() -> None:
    """The inference engine leaves a native-3D model trainable (its weights were swapped
    for channels-last copies made under inference mode, then given back)."""
    from napari_acs.inference import predict_regions

    model = create_model("tf_efficientnet_lite0", conv="3d", pretrained=False)
    weights = {name: p for name, p in model.named_parameters()}
    image = torch.randn(4, 35, 40, 33).numpy()
    predict_regions(image, model, device="cpu")
    assert all(p is weights[name] for name, p in model.named_parameters())
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    loss = model(torch.randn(2, 4, 32, 32, 32)).square().mean()
    loss.backward()  # raised "Inference tensors cannot be saved for backward" before the fix
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
