"""Fine-tuning from a trained checkpoint (``FinetuneConfig.init``, ``napari-acs finetune --init``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from napari_acs.models import create_model, save_checkpoint
from napari_acs.models.checkpoint import load_checkpoint
from napari_acs.synthetic import make_cohort
from napari_acs.training import FinetuneConfig, finetune
from napari_acs.training.cli import add_finetune_parser, config_from_args

TINY = {"model": "tf_efficientnet_lite0", "patch_size": 32, "batch_size": 2, "epochs": 1, "steps_per_epoch": 1,
        "val_fraction": 0, "device": "cpu", "augment": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, 2, seed=3, shape=(48, 48, 40), workers=1)
    return root


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first") / "run"
    return finetune(FinetuneConfig(cohort=cohort, out_dir=out, lr=1e-2, **TINY)).last_checkpoint


def _distance(a: dict, b: dict) -> float:
    """Largest difference of the learned weights (batch norm's running statistics move in any step)."""
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a
               if a[k].is_floating_point() and "running_" not in k)


def test_a_run_starts_from_the_checkpoints_weights(cohort, trained, tmp_path) -> None:
    start = load_checkpoint(trained)[0]
    # a learning rate of 1e-12: after one step the weights are still those it started from
    result = finetune(FinetuneConfig(cohort=cohort, out_dir=tmp_path / "b", init=trained, lr=1e-12, **TINY))
    assert _distance(load_checkpoint(result.last_checkpoint)[0], start) < 1e-5
    fresh = finetune(FinetuneConfig(cohort=cohort, out_dir=tmp_path / "c", lr=1e-12, **TINY))
    assert _distance(load_checkpoint(fresh.last_checkpoint)[0], start) > 1e-3  # a fresh start is elsewhere
    assert str(trained) in str(load_checkpoint(result.last_checkpoint)[1]["meta"]["training"]["config"]["init"])


def test_another_network_is_refused_before_anything_trains(cohort, tmp_path) -> None:
    other = save_checkpoint(create_model("tf_efficientnet_lite0", conv="3d", pretrained=False),
                            tmp_path / "3d.safetensors", normalisation="zscore_brain")
    with pytest.raises(ValueError, match=r"3d\.safetensors: cannot start this run from it.*conv '3d' \(this run: 'acs'\)"):
        finetune(FinetuneConfig(cohort=cohort, out_dir=tmp_path / "run", init=other, **TINY))
    assert not (tmp_path / "run").exists()  # nothing was written


def test_the_command_line_takes_the_network_from_the_init_checkpoint(tmp_path) -> None:
    other = save_checkpoint(create_model("tf_efficientnet_lite0", conv="3d", pretrained=False),
                            tmp_path / "3d.safetensors")
    parser = argparse.ArgumentParser()
    add_finetune_parser(parser.add_subparsers(dest="command"))
    config = config_from_args(parser.parse_args(["finetune", str(tmp_path), "--out", "o", "--init", str(other)]))
    assert (config.model, config.conv, config.init) == ("tf_efficientnet_lite0", "3d", other)
    config = config_from_args(parser.parse_args(["finetune", str(tmp_path), "--out", "o"]))
    assert (config.model, config.conv, config.init) == ("tf_efficientnet_lite0", "acs", None)
