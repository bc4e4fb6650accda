"""The run folder: resumable training state, user checkpoints, ``history.csv``, ``config.json``.

``training_state.pt`` is the commit point of an epoch: model, optimiser, scheduler and
gradient-scaler state, the epoch, the best metric so far, the history and the split,
written atomically after every epoch. It holds only tensors and plain Python values and
is read with ``torch.load(weights_only=True)``: nothing else is ever unpickled. Random
numbers need no saved state: every epoch reseeds from ``(seed, epoch, rank)``.

``last.safetensors`` / ``best.safetensors`` are ordinary model checkpoints
(:func:`napari_acs.models.save_checkpoint`) that ``load_model`` and the Segment widget read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
from pathlib import Path
from typing import Any

import torch

from napari_acs.io.files import atomic_path, atomic_write_text, remove_stale_temporaries, writable_folder
from napari_acs.training.config import RESUMABLE_CHANGES, FinetuneConfig

STATE_FILE = "training_state.pt"
LAST_CHECKPOINT = "last.safetensors"
BEST_CHECKPOINT = "best.safetensors"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"
#: Written when a run stops early (Stop, Ctrl-C, napari closed): why, where, which checkpoint.
STOPPED_FILE = "stopped.json"
RUN_FILES = (STATE_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, HISTORY_FILE, CONFIG_FILE, STOPPED_FILE)
STATE_FORMAT = "napari_acs.training_state"
STATE_VERSION = 1


class TrainingStateError(ValueError):
    """The run folder's ``training_state.pt`` cannot be used to resume."""


def save_state(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``training_state.pt`` atomically (``state`` holds tensors and plain values only)."""
    path = Path(out_dir) / STATE_FILE
    buffer = io.BytesIO()  # serialised in memory, written by Python: a full disk is an OSError
    torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, buffer)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return path


def load_state(out_dir: Path) -> dict[str, Any]:
    """Read ``training_state.pt`` safely (``weights_only=True``); errors name the file."""
    path = Path(out_dir) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise TrainingStateError(f"{path}: not a readable training state ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingStateError(f"{path}: not a napari-acs training state")
    if state.get("version") != STATE_VERSION:
        raise TrainingStateError(
            f"{path}: training state version {state.get('version')!r} is not supported "
            f"(this napari-acs reads {STATE_VERSION})"
        )
    return state


def config_changes(saved: dict[str, Any], config: FinetuneConfig) -> list[str]:
    """``"field: old -> new"`` for every field that a resumed run may not change."""
    new = config.to_dict()
    return [
        f"{key}: {saved.get(key)!r} -> {new[key]!r}"
        for key in new
        if key not in RESUMABLE_CHANGES and saved.get(key) != new[key]
    ]


def prepare_run_folder(config: FinetuneConfig) -> tuple[dict[str, Any] | None, str]:
    """Check ``config.out_dir`` and return ``(state to resume or None, message)``.

    Without ``resume``, a folder holding a previous run is an error unless
    ``overwrite`` (its run files are then deleted). With ``resume`` and no saved
    state the run starts from the beginning in an empty folder, and is refused in one
    that holds checkpoints (they are never replaced without ``overwrite``). A resumed run must keep its config
    (except device, workers, resume and overwrite): else ``ValueError`` lists the changes.
    A folder that cannot be written raises :class:`~napari_acs.io.files.WriteError` first;
    temporary files that killed runs left there are removed.
    """
    out = config.out_dir
    writable_folder(out)  # read-only, not a folder...: refused now, not after the cohort is loaded
    remove_stale_temporaries(out)  # what killed runs left (of processes now gone)
    state_path = out / STATE_FILE
    if config.resume and state_path.is_file():
        state = load_state(out)
        changes = config_changes(state["config"], config)
        if changes:
            raise ValueError(
                f"{out}: cannot resume with a different configuration ({'; '.join(changes)}); "
                "use a new output folder or --overwrite to start again"
            )
        return state, f"resuming {out} at epoch {state['epoch'] + 1}"
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and config.resume and not config.overwrite:
        raise FileExistsError(
            f"{out} holds a previous run ({', '.join(existing)}) but no {STATE_FILE} to resume it from; "
            "nothing was replaced: pass overwrite=True (--overwrite) to start again, or use a new folder"
        )
    if existing and not (config.overwrite or config.resume):
        raise FileExistsError(
            f"{out} holds a previous run ({', '.join(existing)}); pass resume=True (--resume) to "
            "continue it or overwrite=True (--overwrite) to start again"
        )
    for name in existing:
        (out / name).unlink()
    message = f"no saved state in {out}: starting at epoch 1" if config.resume else f"starting a new run in {out}"
    return None, message


def write_config(out_dir: Path, config: FinetuneConfig, extra: dict[str, Any]) -> Path:
    """``config.json``: the run's configuration plus ``extra`` (split, model preset, command line)."""
    text = json.dumps({"config": config.to_dict(), **extra}, indent=2, sort_keys=True, default=str)
    return atomic_write_text(Path(out_dir) / CONFIG_FILE, text + "\n")


def write_stopped(out_dir: Path, *, reason: str, epoch: int, steps_done: int, epochs_completed: int,
                  checkpoint: Path | None) -> Path:
    """``stopped.json``: why and where a run stopped early, and the checkpoint saved then."""
    record = {"stopped": True, "reason": reason, "epoch": epoch, "steps_done_in_epoch": steps_done,
              "epochs_completed": epochs_completed, "checkpoint": None if checkpoint is None else checkpoint.name}
    return atomic_write_text(Path(out_dir) / STOPPED_FILE, json.dumps(record, indent=2) + "\n")


def clear_stopped(out_dir: Path) -> None:
    """Remove ``stopped.json`` of an earlier run that this run continues or replaces."""
    (Path(out_dir) / STOPPED_FILE).unlink(missing_ok=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> Path:
    """Rewrite ``history.csv`` atomically: one row per epoch, columns in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow([_cell(row.get(key, "")) for key in columns])
    return atomic_write_text(Path(out_dir) / HISTORY_FILE, buffer.getvalue())


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``history.csv`` with numbers as floats (``epoch`` and ``steps`` as ints)."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    out = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            try:
                parsed[key] = int(value) if key in ("epoch", "steps") else float(value)
            except ValueError:
                parsed[key] = value
        out.append(parsed)
    return out
