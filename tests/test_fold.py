"""Batch norm folded into the convolution before it, one way, on a copy: same output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_acs.models import create_model
from napari_acs.models.acs_conv import ACSConv3d
from napari_acs.models.fold import AfterNorm, fold_batchnorm


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
def test_folding_keeps_the_output_on_a_copy(name: str, conv: str) -> None:
    model = create_model(name, conv=conv, pretrained=False).eval()
    _realistic_statistics(model)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    norms = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    x = torch.randn(1, 4, 37, 34, 33)
    folded = fold_batchnorm(model)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())  # every one followed a convolution
    assert sum(isinstance(m, (AfterNorm, nn.Identity)) for m in folded.modules()) >= norms
    # the model itself is as it was: its own batch norms, its own weights
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.modules()) == norms
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), weights[n]), n


class _ConvNorm(nn.Module):
    """An ACS convolution and a batch norm; subclasses wire them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ACSConv3d(4, 4, 3, padding=1, bias=False)
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
    with pytest.warns(RuntimeWarning, match="unfolded"):
        folded = fold_batchnorm(model)
    assert isinstance(folded.bn, nn.BatchNorm3d) and folded.conv.bias is None  # the failed fold was undone
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x))


class _TinyOutput(_ConvNorm):
    """A classifier-like model whose single output lies near zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e-6 * self.bn(self.conv(x)).mean().view(1, 1)


def test_a_near_zero_output_still_folds() -> None:
    """Rounding is judged against the output's scale, at least 1: a logit near 0 is no reason to refuse."""
    model = _TinyOutput().eval()
    _realistic_statistics(model)
    folded = fold_batchnorm(model, inplace=True)
    assert folded is model and isinstance(model.bn, nn.Identity) and model.conv.bias is not None


def test_training_mode_batch_norms_are_not_folded() -> None:
    model = _TinyOutput().train()
    assert isinstance(fold_batchnorm(model).bn, nn.BatchNorm3d)
