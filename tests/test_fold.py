"""Batch norm folded into the convolution before it, for inference: same output, nothing kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_acs.models import create_model
from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.fold import _CACHE, folded_batchnorm


def _realistic_statistics(model: nn.Module) -> None:
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("conv", ["acs", "3d"])
@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_folding_keeps_the_output_and_gives_everything_back(name: str, conv: str) -> None:
    model = create_model(name, conv=conv, pretrained=False).eval()
    _realistic_statistics(model)
    weights = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    x = torch.randn(1, 4, 37, 34, 33)
    with torch.inference_mode():
        expected = model(x)
        with folded_batchnorm(model):
            folded = model(x)
            norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
            assert len(getattr(model, _CACHE)) == len(norms)  # every batch norm follows a convolution
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():  # the very tensors back, unchanged
        assert p.data_ptr() == weights[n][0] and torch.equal(p.detach(), weights[n][1]), n
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert {n for n, _ in model.named_parameters()} == set(weights)  # no bias Parameter left behind
    model.train()  # training afterwards is unaffected (no inference-mode tensors kept)
    model(torch.randn(2, 4, 32, 32, 32)).mean().backward()


class _ConvNorm(nn.Module):
    """An ACS convolution and a batch norm; subclasses wire them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ACSConv3d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)


class _Residual(_ConvNorm):
    """A convolution whose output feeds its batch norm and a residual sum: not foldable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_convolution_output_used_twice_is_not_folded() -> None:
    model = _Residual().eval()
    _realistic_statistics(model)
    x = torch.randn(1, 4, 9, 8, 7)
    with torch.inference_mode():
        expected = model(x)
        with pytest.warns(RuntimeWarning, match="unfolded"), folded_batchnorm(model):
            got = model(x)
    assert getattr(model, _CACHE) == []
    torch.testing.assert_close(got, expected)


class _TinyOutput(_ConvNorm):
    """A classifier-like model whose single output lies near zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e-6 * self.bn(self.conv(x)).mean().view(1, 1)


def test_a_near_zero_output_still_folds() -> None:
    """Rounding is judged against the output's scale, at least 1: a logit near 0 is no reason to refuse."""
    model = _TinyOutput().eval()
    _realistic_statistics(model)
    with torch.inference_mode(), folded_batchnorm(model):
        pass
    assert getattr(model, _CACHE) == [(model.conv, model.bn)]
