"""Model choice shared by the Segment and Classify widgets: demo model, preset (ACS/3D) or checkpoint.

The backend (torch, timm) is imported in a worker when the widget opens; until
then the list shows "loading". A checkpoint's model card is read in a worker too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QTextBrowser, QWidget

from napari_acs._napari._qt import MessageLabel, PathEdit, error_text
from napari_acs._napari._workers import TaskRunner

Kind = Literal["demo", "preset", "checkpoint"]
CHECKPOINT_FILTER = "napari-acs checkpoints (*.safetensors *.pth *.pt)"
UNTRAINED_WARNING = (
    "Untrained model: ImageNet encoder, random {head}. Its output is meaningless until it is "
    "fine-tuned (Fine-tune widget) or a trained checkpoint is chosen."
)


@dataclass(frozen=True)
class ModelSpec:
    """What the user picked: the shipped demo model, a preset with ACS or 3D convolutions, or a file."""

    kind: Kind
    task: str = "segmentation"
    name: str | None = None
    conv: str = "acs"
    checkpoint: Path | None = None

    def cache_key(self) -> tuple:
        """Changes when the model to build changes (a rewritten checkpoint included)."""
        stamp = self.checkpoint.stat().st_mtime_ns if self.checkpoint and self.checkpoint.is_file() else None
        return (self.kind, self.task, self.name, self.conv, self.checkpoint, stamp)

    def select(self) -> Any:
        """Build or load the model (worker thread): a ``napari_acs.models.select.SelectedModel``."""
        from napari_acs.models.select import select_model

        if self.kind == "checkpoint":
            if self.checkpoint is None:
                raise ValueError("no checkpoint file chosen")
            return select_model(checkpoint=self.checkpoint, task=self.task)
        return select_model(self.name if self.kind == "preset" else None, conv=self.conv, task=self.task)


class EngineCache:
    """A widget's own engine, built in its worker and kept while the model, device and
    options stay the same (building one takes seconds). One per widget: never shared."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Any = None

    def get(self, key: tuple, build: Any) -> Any:
        """The kept value for ``key``, or ``build()`` (the old one is dropped first, freeing its memory)."""
        if key != self._key:
            self._key, self._value = None, None
            self._value = build()
            self._key = key
        return self._value


@dataclass(frozen=True)
class BackendInfo:
    """What the widgets need from the backend: presets, the demo checkpoint, CUDA."""

    presets: list[tuple[str, str]]
    default: str
    demo: Path | None
    cuda: bool


def load_backend(progress: Any = None, cancel: Any = None) -> BackendInfo:
    """Worker job: import torch and the backend once; list what can be chosen.

    Importing here, while the user is still choosing, keeps first-time module
    initialisation (which holds the GIL) out of the runs, where it would stall the GUI.
    """
    import torch

    import napari_acs.inference
    import napari_acs.metrics
    import napari_acs.inference.preprocess  # noqa: F401 (Classify's input preparation)
    import napari_acs.training.loop  # Fine-tune
    import napari_acs.training.plots  # noqa: F401 (matplotlib, for the curves and the report)
    from napari_acs.models.registry import get_preset, list_models
    from napari_acs.models.select import DEFAULT_PRESET, demo_checkpoint_path

    demo = demo_checkpoint_path()
    return BackendInfo(
        presets=[(name, get_preset(name).description) for name in list_models()],
        default=DEFAULT_PRESET,
        demo=demo if demo.is_file() else None,
        cuda=torch.cuda.is_available(),
    )


def read_card(path: Path) -> dict:
    """Worker job: a checkpoint's header (``create_model`` kwargs and ``meta``), weights unused."""
    from napari_acs.models.checkpoint import load_checkpoint

    return load_checkpoint(path)[1]


def card_markdown(header: dict, source: str) -> str:
    """The model card of a checkpoint header as Markdown: what it is, how good, its own card."""
    build, meta = header.get("create_model", {}), header.get("meta", {})
    lines = [f"**{build.get('name', '?')}** · {str(build.get('conv', '?')).upper()} · {build.get('task', '?')}"]
    lines.append(f"*{source}*")
    if meta.get("patch_size"):
        lines.append("Patch: " + "×".join(str(s) for s in meta["patch_size"]) + " voxels")
    dice = meta.get("heldout_dice")
    if isinstance(dice, dict):
        lines.append("Held-out Dice: " + " · ".join(f"{k} {float(v):.3f}" for k, v in dice.items()))
    metrics = {k: v for k, v in (meta.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not k.endswith("seconds")}
    if metrics:
        lines.append("Validation: " + " · ".join(f"{k.removeprefix('val_')} {float(v):.3f}" for k, v in metrics.items()))
    training = meta.get("training") or {}
    if training.get("epochs_completed") is not None:
        cohort = (training.get("config") or {}).get("cohort")
        lines.append(f"Fine-tuned for {training['epochs_completed']} epoch(s)" + (f" on {cohort}" if cohort else ""))
    card = meta.get("model_card")
    if isinstance(card, dict):
        card = "\n".join(f"- **{k}**: {v}" for k, v in card.items())
    if card:
        lines.append(str(card))
    return "\n\n".join(lines)


class ModelChoice(QWidget):
    """Model, convolution type and checkpoint file, with the model card and a plain warning."""

    def __init__(self, task: str = "segmentation", *, presets: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task, self.allow_presets = task, presets
        self.info: BackendInfo | None = None
        self._pending_checkpoint: Path | None = None
        self.model = QComboBox()
        self.model.addItem("Loading the model backend…", None)
        self.model.setEnabled(False)
        self.conv = QComboBox()
        self.conv.addItem("ACS (2D ImageNet kernels)", "acs")
        self.conv.addItem("3D (native kernels, from scratch)", "3d")
        self.conv.setToolTip("ACS reuses each 2D kernel on axial, coronal and sagittal planes")
        for combo in (self.model, self.conv):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        self.checkpoint = PathEdit("file", caption="Model checkpoint", name_filter=CHECKPOINT_FILTER,
                                   placeholder=".safetensors file from Fine-tune or napari-acs finetune")
        self.card = QTextBrowser()
        self.card.setMaximumHeight(110)
        self.card.setMinimumHeight(60)
        self.card.setOpenExternalLinks(False)
        self.warning = MessageLabel()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Model", self.model)
        form.addRow("Convolutions", self.conv)
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow(self.card)
        form.addRow(self.warning)
        self._form = form

        self.model.currentIndexChanged.connect(self._update)
        self.conv.currentIndexChanged.connect(self._update)
        self.checkpoint.changed.connect(lambda _: self._update())
        self._cards = TaskRunner(self)
        self._cards.succeeded.connect(self._show_card)
        self._cards.failed.connect(self._card_failed)
        self._cards.stopped.connect(self._card_stopped)
        self._card_path: Path | None = None
        self.backend = TaskRunner(self)
        self.backend.succeeded.connect(self._backend_ready)
        self.backend.failed.connect(lambda exc: self.warning.show_message(error_text(exc), "error"))
        self.backend.start(load_backend)

    # ------------------------------------------------------------------ choices
    def _backend_ready(self, info: BackendInfo) -> None:
        self.info = info
        self.model.blockSignals(True)
        self.model.clear()
        if info.demo is not None and self.task == "segmentation":
            self.model.addItem("Demo model (trained on the synthetic sample cohort)", "demo")
        if self.allow_presets:
            for name, description in info.presets:
                self.model.addItem(f"{name} (untrained)", f"preset:{name}")
                self.model.setItemData(self.model.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.model.addItem("Checkpoint file…", "checkpoint")
        first = "demo" if self.model.findData("demo") >= 0 else f"preset:{info.default}"
        self.model.setCurrentIndex(max(self.model.findData(first), 0))
        self.model.setEnabled(True)
        self.model.blockSignals(False)
        self._update()
        if self._pending_checkpoint is not None:
            self.choose_checkpoint(self._pending_checkpoint)

    def ready(self) -> bool:
        return self.info is not None

    def spec(self) -> ModelSpec:
        """The current choice (call once :meth:`ready`)."""
        kind, _, name = (self.model.currentData() or "checkpoint").partition(":")
        paths = self.checkpoint.paths()
        return ModelSpec(kind, self.task, name or None, self.conv.currentData(), paths[0] if paths else None)

    def choose_checkpoint(self, path: str | Path) -> None:
        """Select a checkpoint file (the Fine-tune widget's "Use in Segment")."""
        if not self.ready():  # applied when the backend is loaded
            self._pending_checkpoint = Path(path)
            return
        index = self.model.findData("checkpoint")
        self.model.setCurrentIndex(index)
        self.checkpoint.set_text(str(path))

    def _update(self) -> None:
        if not self.ready():
            return
        spec = self.spec()
        self._form.setRowVisible(self.conv, spec.kind == "preset")
        self._form.setRowVisible(self.checkpoint, spec.kind == "checkpoint")
        self.warning.clear_message()
        if spec.kind == "preset":
            head = "decoder" if self.task == "segmentation" else "classification head"
            description = dict(self.info.presets).get(spec.name, "")
            self.card.setMarkdown(f"**{spec.name}** · {spec.conv.upper()} · {self.task}\n\n{description}")
            self.warning.show_message(UNTRAINED_WARNING.format(head=head), "warning")
        else:
            path = self.info.demo if spec.kind == "demo" else spec.checkpoint
            self._request_card(path)

    # ------------------------------------------------------------------ model card
    def _request_card(self, path: Path | None) -> None:
        self._card_path = path
        if path is None:
            self.card.setMarkdown("Choose a checkpoint file (.safetensors) written by napari-acs.")
            return
        self.card.setMarkdown(f"Reading {path.name}…")
        if not self._cards.busy:
            self._cards.start(lambda progress, cancel: (path, read_card(path)))

    def _show_card(self, result: tuple[Path, dict]) -> None:
        path, header = result
        if path != self._card_path:
            return  # the choice changed meanwhile; _card_stopped reads the new one
        from napari_acs.inference.plausibility import model_concerns, worst_level

        task = header.get("create_model", {}).get("task")
        self.card.setMarkdown(card_markdown(header, str(path)))
        if task and task != self.task:
            self.warning.show_message(f"{path.name} is a {task} model; this widget needs a {self.task} model.", "error")
            return
        concerns = model_concerns(header.get("meta"), task or self.task)
        if concerns:  # a poorly scored model says so, in orange or red, under its card
            self.warning.show_message(" ".join(c.text for c in concerns), worst_level(concerns))

    def _card_failed(self, exc: BaseException) -> None:
        self.card.setMarkdown("")
        self.warning.show_message(error_text(exc), "error")

    def _card_stopped(self) -> None:
        shown = self.card.toMarkdown()
        if self._card_path is not None and shown.startswith("Reading"):
            self._request_card(self._card_path)
