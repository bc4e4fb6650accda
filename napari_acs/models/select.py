"""Pick the model a user asked for: a checkpoint, a preset, or the shipped demo model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from napari_acs.io.sample import sample_data_dir

DEFAULT_PRESET = "tf_efficientnet_lite0"
DEMO_CHECKPOINT_NAME = "demo_tf_efficientnet_lite0_acs.safetensors"


def demo_checkpoint_path() -> Path:
    """Where the shipped demo segmentation checkpoint lives (may not exist)."""
    return sample_data_dir() / "demo_model" / DEMO_CHECKPOINT_NAME


@dataclass
class SelectedModel:
    """A ready model and what the user should know about it."""

    model: nn.Module
    description: str
    trained: bool


def select_model(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    *,
    conv: str = "acs",
    task: str = "segmentation",
) -> SelectedModel:
    """Load ``checkpoint``, or build preset ``name``, or use the demo checkpoint.

    A preset without a checkpoint has an ImageNet encoder but an untrained
    decoder/head: ``trained`` is False and the description says so plainly.
    """
    from napari_acs.models.checkpoint import load_model
    from napari_acs.models.factory import create_model

    if checkpoint is not None:
        model = load_model(checkpoint)
        return SelectedModel(model, f"checkpoint {checkpoint}", trained=True)
    if name is None and task == "segmentation" and demo_checkpoint_path().is_file():
        model = load_model(demo_checkpoint_path())
        return SelectedModel(model, f"demo model {demo_checkpoint_path().name}", trained=True)
    name = name or DEFAULT_PRESET
    model = create_model(name, conv=conv, task=task)
    return SelectedModel(
        model,
        f"{name} ({conv}) UNTRAINED: ImageNet encoder, random decoder; its output is "
        "meaningless until fine-tuned (napari-acs finetune) or a checkpoint is given",
        trained=False,
    )
