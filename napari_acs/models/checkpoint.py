"""Safe model checkpoints: safetensors weights plus the metadata that rebuilds the model.

A checkpoint is one ``.safetensors`` file: the model's ``state_dict`` tensors and,
under the safetensors metadata key ``"napari_acs"``, a JSON object::

    {"format_version": 1, "napari_acs_version": "...",
     "create_model": {...keyword arguments that rebuild the architecture...},
     "meta": {...label convention, normalisation, patch size, model card, training...}}

Legacy ``.pth``/``.pt`` files (``{"state_dict": ..., "napari_acs": {...}}``) are read
with ``torch.load(weights_only=True)`` only: loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

import napari_acs
from napari_acs.io.files import atomic_path, refuse_existing

FORMAT_VERSION = 1
METADATA_KEY = "napari_acs"
LEGACY_SUFFIXES = (".pth", ".pt")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or cannot rebuild its model."""


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} must be JSON-serialisable: {exc}") from exc


def save_checkpoint(
    model: nn.Module, path: str | Path, *, overwrite: bool = False, **meta: Any
) -> Path:
    """Write ``model``'s weights and rebuild recipe to a ``.safetensors`` file, atomically.

    Args:
        model: a module carrying ``create_kwargs`` (set by ``create_model``); a
            (Distributed)DataParallel wrapper is unwrapped.
        path: destination ending in ``.safetensors``; parent folders are created.
        overwrite: replace an existing file (otherwise ``FileExistsError``).
        **meta: JSON-serialisable free metadata (label_convention, normalisation,
            patch_size, model_card, training...), returned as ``model.checkpoint_meta``.

    Returns:
        The path written. Shared or non-contiguous tensors are stored as copies.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors files")
    refuse_existing(path, overwrite)
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    create_kwargs = getattr(model, "create_kwargs", None)
    if not isinstance(create_kwargs, dict):
        raise CheckpointError(
            f"cannot save {type(model).__name__} to {path}: it has no create_kwargs dict "
            "(build it with napari_acs.models.create_model, or set model.create_kwargs)"
        )
    header = {
        "format_version": FORMAT_VERSION,
        "napari_acs_version": napari_acs.__version__,
        "create_model": create_kwargs,
        "meta": meta,
    }
    metadata = {METADATA_KEY: _json(header, f"checkpoint metadata for {path}")}
    tensors = {
        key: value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for key, value in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # serialised in memory, then written by Python: a full or read-only disk is an OSError
    # (a WriteError naming ``path``), not a SafetensorError from the Rust writer
    data = save(tensors, metadata=metadata)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return path


def _parse_header(header: Any, path: Path) -> dict:
    """Validated ``{"format_version", "create_model", "meta", ...}`` object."""
    if isinstance(header, str):
        try:
            header = json.loads(header)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: napari-acs metadata is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: napari-acs metadata is not a JSON object")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported (this napari-acs "
            f"{napari_acs.__version__} reads version {FORMAT_VERSION}); "
            "a newer napari-acs may read it"
        )
    for key in ("create_model", "meta"):
        if not isinstance(header.get(key), dict):
            raise CheckpointError(f"{path}: napari-acs metadata has no {key!r} object")
    _check_meta(header["meta"], path)
    return header


#: What a checkpoint's ``create_model`` object may hold, and the checks each value must pass.
_CREATE_KWARGS = {
    "name": lambda v: isinstance(v, str) and 0 < len(v) <= 100 and v.replace("_", "").replace(".", "").isalnum(),
    "conv": lambda v: v in ("acs", "3d"),
    "task": lambda v: v in ("segmentation", "classification"),
    "in_channels": lambda v: v == 4,  # the four MRI sequences of a BraTS case
    "num_classes": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16,
    "pretrained": lambda v: v in (False, None, True) or isinstance(v, str),  # never followed: see load_model
    "dropout": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
}
_SIZE_KEYS = ("patch_size", "input_size")


def _check_create_kwargs(kwargs: dict, path: Path) -> None:
    """Refuse, before anything is built, rebuild arguments a napari-acs model cannot have."""
    unknown = sorted(set(kwargs) - set(_CREATE_KWARGS))
    if unknown:
        raise CheckpointError(f"{path}: unknown create_model keys {unknown} in the metadata")
    if "name" not in kwargs:
        raise CheckpointError(f"{path}: the metadata's create_model has no model name")
    for key, value in kwargs.items():
        if not _CREATE_KWARGS[key](value):
            raise CheckpointError(f"{path}: create_model {key}={value!r} is not allowed in a napari-acs checkpoint")
    task = kwargs.get("task", "segmentation")
    if task == "segmentation" and kwargs.get("num_classes", 3) != 3:
        raise CheckpointError(f"{path}: a segmentation model has 3 outputs (WT, TC, ET), "
                              f"not num_classes={kwargs['num_classes']}")


def _check_meta(meta: dict, path: Path) -> None:
    for key in _SIZE_KEYS:
        size = meta.get(key)
        if size is None:
            continue
        if not (isinstance(size, list) and len(size) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and 8 <= s <= 512 for s in size)):
            raise CheckpointError(f"{path}: meta {key} {size!r} is not three voxel counts between 8 and 512")


def _no_metadata(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: no napari-acs metadata ({METADATA_KEY!r}), so the model cannot be rebuilt; "
        "was it written by napari_acs.models.save_checkpoint? (a plain weight file can be "
        "used as pretrained=<file> for create_model instead)"
    )


def _load_safetensors(path: Path) -> tuple[dict[str, Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = (fh.metadata() or {}).get(METADATA_KEY)
            if header is None:
                raise _no_metadata(path)
            state = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return state, _parse_header(header, path)


def _load_legacy(path: Path) -> tuple[dict[str, Tensor], dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0]
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True) ({detail.split('. Please')[0]}): "
            "the file is corrupt or holds Python objects other than tensors, which napari-acs "
            "never unpickles because they could run code"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    if METADATA_KEY not in obj:
        raise _no_metadata(path)
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is missing or not a dict of tensors")
    return dict(state), _parse_header(obj[METADATA_KEY], path)


def load_checkpoint(path: str | Path, *, check_schema: bool = True) -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint without building a model.

    Returns:
        ``(state_dict, header)``: CPU tensors, and the parsed metadata object with
        ``"format_version"``, ``"create_model"`` (rebuild kwargs) and ``"meta"``.

    ``check_schema`` (default) also checks the ``create_model`` object against what a
    napari-acs model can be (names, channels, class counts), so that whoever reads the
    header (a model card, a fine-tuning start) refuses a forged one as ``load_model`` does.

    Raises:
        CheckpointError: missing, corrupt or unsafe file, no or bad metadata,
            unsupported ``format_version`` or file type, rebuild arguments out of schema.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        state, header = _load_safetensors(path)
    elif path.suffix in LEGACY_SUFFIXES:
        state, header = _load_legacy(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint type; expected .safetensors, .pth or .pt")
    if check_schema:
        _check_create_kwargs(header["create_model"], path)
    return state, header


def load_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    build: Callable[..., nn.Module] | None = None,
) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict).

    Args:
        path: ``.safetensors`` checkpoint (or legacy ``.pth``/``.pt``).
        device: where the model ends up.
        build: called as ``build(**create_kwargs)``; default
            ``napari_acs.models.factory.create_model``.

    Returns:
        The model in eval mode, with ``checkpoint_meta`` (the ``meta`` dict) and
        ``create_kwargs`` attributes.
    """
    state, header = load_checkpoint(path, check_schema=build is None)  # a custom build checks its own
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{path}: weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold NaN "
                              "or infinite values (a diverged training run?)")
    create_kwargs = header["create_model"]
    if build is None:
        from napari_acs.models.factory import create_model as build

        # the weights come from this file: a path in the metadata is never opened
        create_kwargs = {**create_kwargs, "pretrained": False}
    try:
        model = build(**create_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot rebuild the model from {create_kwargs}: {exc}"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model: {exc}") from exc
    model.to(device).eval()
    model.checkpoint_meta = header["meta"]
    model.create_kwargs = header["create_model"]
    return model
