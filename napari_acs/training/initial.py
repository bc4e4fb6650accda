"""Starting a run from a trained napari-acs checkpoint (``FinetuneConfig.init``): checked before anything trains."""

from __future__ import annotations

from torch import Tensor

from napari_acs.models.checkpoint import load_checkpoint
from napari_acs.models.registry import get_preset
from napari_acs.training.config import FinetuneConfig


def initial_weights(config: FinetuneConfig) -> dict[str, Tensor]:
    """The state dict of ``config.init``, after checking it is this run's network.

    Raises:
        CheckpointError: the file is missing, unreadable or unsafe (naming it).
        ValueError: its architecture (model, conv, task, channels, outputs) or normalisation
            is not this run's, naming the checkpoint and each difference.
    """
    state, header = load_checkpoint(config.init)
    built = header["create_model"]
    meta = header.get("meta") or {}
    wanted = {"name": config.model, "conv": config.conv, "task": config.task}
    problems = [f"{key} {built.get(key)!r} (this run: {value!r})" for key, value in wanted.items()
                if built.get(key) != value]
    normalisation = meta.get("normalisation")
    if normalisation is not None and normalisation != get_preset(config.model).normalisation:
        problems.append(f"normalisation {normalisation!r} (this run: {get_preset(config.model).normalisation!r})")
    if problems:
        raise ValueError(f"{config.init}: cannot start this run from it: the checkpoint's " + ", ".join(problems)
                         + "; choose a checkpoint of the same network, or --model/--conv to match it")
    return state
