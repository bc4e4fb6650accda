"""A model's card as a report shows it: what it is, which weights, trained on what, how good.

Read from a checkpoint's header (:func:`napari_acs.models.checkpoint.load_checkpoint`:
``create_model`` rebuild arguments and free ``meta``), the same header the Segment widget
shows as its model card, or made for an untrained preset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONV_NAMES = {"acs": "ACS (2D ImageNet kernels on axial, coronal, sagittal planes)",
              "3d": "3D (native k×k×k kernels)"}


@dataclass(frozen=True)
class ModelCard:
    """What a report says about the model that made a segmentation.

    ``dice`` maps regions (WT, TC, ET, ...) to a recorded Dice, ``dice_source`` says which
    (``"held-out, N cases"``: cases never trained on; ``"validation"``: the run's validation split).
    """

    name: str
    conv: str = "?"
    task: str = "segmentation"
    weights: str = "?"
    initialisation: str = ""
    training_data: str = "not recorded"
    dice: dict[str, float] = field(default_factory=dict)
    dice_source: str = ""
    trained: bool = True

    @property
    def conv_text(self) -> str:
        return CONV_NAMES.get(self.conv, self.conv)

    def lines(self) -> list[tuple[str, str]]:
        """``(field, text)`` rows, in the order a report prints them."""
        rows = [("Model", f"{self.name} · {self.conv.upper()} · {self.task}"),
                ("Convolutions", self.conv_text), ("Weights", self.weights)]
        if self.initialisation:
            rows.append(("Initialisation", self.initialisation))
        rows.append(("Training data", self.training_data))
        if self.dice:
            scores = " · ".join(f"{k} {v:.3f}" for k, v in self.dice.items())
            rows.append(("Recorded Dice", scores + (f" ({self.dice_source})" if self.dice_source else "")))
        elif self.trained:
            rows.append(("Recorded Dice", "none in the checkpoint"))
        return rows

    @classmethod
    def from_header(cls, header: dict, source: str | os.PathLike) -> ModelCard:
        """The card of a checkpoint header (``{"create_model": {...}, "meta": {...}}``) read from ``source``."""
        build = header.get("create_model") or {}
        meta = header.get("meta") or {}
        conv = str(build.get("conv", "?"))
        card = meta.get("model_card")
        training = meta.get("training") or {}
        config = training.get("config") or {}
        init = _card_field(card, "Initialisation") or _initialisation(config.get("pretrained"), conv)
        data = _card_field(card, "Training data") or _training_data(training)
        dice, dice_source = _recorded_dice(meta)
        return cls(name=str(build.get("name", "?")), conv=conv, task=str(build.get("task", "segmentation")),
                   weights=f"checkpoint {Path(source).name}", initialisation=init, training_data=data,
                   dice=dice, dice_source=dice_source)

    @classmethod
    def untrained(cls, name: str, conv: str, task: str = "segmentation") -> ModelCard:
        """The card of a preset built without a checkpoint: ImageNet encoder, random decoder."""
        head = "decoder" if task == "segmentation" else "classification head"
        return cls(name=name, conv=conv, task=task,
                   weights=f"UNTRAINED: ImageNet encoder, random {head}; the output is meaningless",
                   training_data="none", trained=False)


def model_card_from_checkpoint(path: str | os.PathLike) -> ModelCard:
    """The card of a checkpoint file (its header; the weights are not used).

    Raises :class:`~napari_acs.models.checkpoint.CheckpointError` naming the file.
    """
    from napari_acs.models.checkpoint import load_checkpoint

    return ModelCard.from_header(load_checkpoint(path)[1], path)


def _card_field(card: Any, name: str) -> str:
    """A field of a free-text model card: a ``- Name: text`` bullet of a Markdown card (with its
    continuation lines, backticks dropped) or a key of a dict card; ``""`` if absent."""
    if isinstance(card, dict):
        value = next((v for k, v in card.items() if str(k).lower() == name.lower()), "")
        return str(value)
    if not isinstance(card, str):
        return ""
    found: list[str] = []
    for line in card.splitlines():
        stripped = line.strip()
        if found:
            if not stripped or stripped.startswith(("-", "#", "|", "*")):
                break
            found.append(stripped)
        elif stripped.lower().startswith(f"- {name.lower()}:"):
            found.append(stripped.split(":", 1)[1].strip())
    return " ".join(found).replace("`", "")


def _initialisation(pretrained: Any, conv: str) -> str:
    if isinstance(pretrained, str) and pretrained:
        return f"from {Path(pretrained).name}"
    if pretrained is False:
        return "random (from scratch)"
    return "ImageNet encoder weights" if conv == "acs" else "random (native 3D, from scratch)"


def _training_data(training: dict) -> str:
    ids = training.get("train_ids") or []
    cohort = (training.get("config") or {}).get("cohort")
    if not ids and not cohort:
        return "not recorded"
    text = f"{len(ids)} cases" if ids else "cases"
    text += f" of {cohort}" if cohort else ""
    epochs = training.get("epochs_completed")
    return text + (f", {epochs} epoch(s)" if epochs is not None else "")


def _recorded_dice(meta: dict) -> tuple[dict[str, float], str]:
    """Held-out Dice per region if recorded, else the validation Dice of the training run."""
    held_out = meta.get("heldout_dice")
    if isinstance(held_out, dict) and held_out:
        cases = meta.get("heldout_cases")
        source = f"held-out, {len(cases)} cases" if isinstance(cases, list) else "held-out"
        return _regions_first({k: float(v) for k, v in held_out.items() if isinstance(v, (int, float))}), source
    metrics = meta.get("metrics") or {}
    dice = {k.removeprefix("val_dice_"): float(v) for k, v in metrics.items()
            if k.startswith("val_dice_") and isinstance(v, (int, float))}
    return (_regions_first(dice), "validation") if dice else ({}, "")


def _regions_first(dice: dict[str, float]) -> dict[str, float]:
    order = ["WT", "TC", "ET", "mean"]
    return dict(sorted(dice.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
