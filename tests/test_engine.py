"""The inference engines own a prepared copy of their network; the caller's model is never changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_acs.inference import Classifier, Segmenter, classify, predict_regions, segment
from napari_acs.io import load_case
from napari_acs.models import create_model, save_checkpoint
from napari_acs.models.fold import AfterNorm
from napari_acs.synthetic import make_cohort

SMALL = (48, 48, 40)


def model_state(model: nn.Module) -> dict:
    """Everything a caller could notice: weights (values and storage), devices, modes, forwards, hooks, attributes."""
    return {
        "tensors": {k: (v.data_ptr(), v.dtype, str(v.device), v.detach().cpu().clone().numpy().tobytes())
                    for k, v in model.state_dict().items()},
        "params": [(n, p.requires_grad, p.is_inference()) for n, p in model.named_parameters()],
        "training": [m.training for m in model.modules()],
        "forwards": [("forward" in m.__dict__) for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "modules": [type(m).__name__ for m in model.modules()],
        "attributes": sorted(model.__dict__),
    }


def _realistic_statistics(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return load_case(make_cohort(tmp_path_factory.mktemp("engine"), 1, shape=SMALL, workers=1)[0])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("conv", ["acs", "3d"])
def test_the_callers_model_is_never_changed(conv: str, training: bool, case) -> None:
    torch.manual_seed(0)
    model = _realistic_statistics(create_model("tf_efficientnet_lite0", conv=conv, pretrained=False)).train(training)
    before = model_state(model)
    engine = Segmenter(model, device="cpu")
    engine.segment(case)
    segment(case, model, device="cpu", tta=True)
    predict_regions(np.zeros((4, 32, 32, 32), np.float32), model, device="cpu")
    assert model_state(model) == before
    # the engine's own copy is prepared: eval, folded, channels-last, no gradients
    net = engine.network
    assert not any(m.training for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert any(isinstance(m, AfterNorm) for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    assert all(p.data_ptr() not in {v[0] for v in before["tensors"].values()} for p in net.parameters())
    model.train()  # and the model still trains
    model(torch.randn(2, 4, 32, 32, 32)).mean().backward()


@pytest.mark.parametrize("conv", ["acs", "3d"])
def test_the_engine_predicts_what_the_unprepared_model_predicts(conv: str) -> None:
    torch.manual_seed(0)
    model = _realistic_statistics(create_model("tf_efficientnet_lite0", conv=conv, pretrained=False)).eval()
    image = np.random.default_rng(0).standard_normal((4, 37, 41, 33)).astype(np.float32)
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(image)[None]))[0].numpy()
    got = Segmenter(model, device="cpu").predict_regions(image)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_from_checkpoint_owns_what_it_loads_and_copies_a_model(tmp_path: Path, case) -> None:
    model = create_model("mobilenetv2_100", pretrained=False)
    path = save_checkpoint(model, tmp_path / "seg.safetensors", patch_size=[32, 32, 32])
    loaded = Segmenter.from_checkpoint(path, device="cpu")
    assert loaded.patch_size == (32, 32, 32) and loaded.meta["patch_size"] == [32, 32, 32]
    copied = Segmenter.from_checkpoint(model, device="cpu")
    assert next(copied.network.parameters()).data_ptr() != next(model.parameters()).data_ptr()
    assert np.array_equal(loaded.segment(case), copied.segment(case))


def test_one_engine_segments_many_cases_and_a_cohort(tmp_path: Path) -> None:
    cases = make_cohort(tmp_path / "cohort", 2, shape=SMALL, workers=1)
    engine = Segmenter(create_model("mobilenetv2_100", pretrained=False), device="cpu")
    results = engine.segment_cohort(cases, tmp_path / "out")
    assert [r.error for r in results] == [None, None]
    assert all(r.output.is_file() for r in results)
    again = segment(load_case(cases[0]), engine)  # the functional API takes an engine too
    assert again.shape == load_case(cases[0]).shape


def test_classifier_leaves_the_model_and_matches_the_function(case) -> None:
    torch.manual_seed(0)
    model = _realistic_statistics(create_model("tf_efficientnet_lite0", task="classification", pretrained=False))
    model.train()
    before = model_state(model)
    engine = Classifier(model, device="cpu")
    p = engine.classify(case)
    assert 0 < p < 1 and p == pytest.approx(classify(case, model, device="cpu"), abs=1e-6)
    assert model_state(model) == before
    with torch.inference_mode():
        from napari_acs.inference.preprocess import classification_input

        x = torch.from_numpy(classification_input(case.image, engine.input_size))[None]
        expected = float(torch.sigmoid(model.eval()(x)[0, 0]))
    assert p == pytest.approx(expected, abs=1e-5)
