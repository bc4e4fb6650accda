"""Fine-tuning the model in use on a reader's accepted corrections (the loop's last step)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from napari_acs.progress import CancelSignal, ProgressCallback
from napari_acs.review.cohort import ReviewCohort


def finetune_on_corrections(
    review: ReviewCohort,
    init: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    include_references: bool = False,
    epochs: int = 1,
    steps_per_epoch: int = 50,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    on_event=None,
    **config: Any,
):
    """Fine-tune checkpoint ``init`` on the cases accepted in ``review`` (and, with
    ``include_references``, the cases that came with a reference).

    The network is the checkpoint's (model, conv, task); ``out_dir`` defaults to
    ``<cohort>/.napari-acs/finetune/<UTC time>``. Every case is trained on (no validation
    split: the corrections are few); ``config`` passes other
    :class:`~napari_acs.training.FinetuneConfig` fields (``lr``, ``patch_size``, ``seed``...).
    Returns the :class:`~napari_acs.training.FinetuneResult` (``last_checkpoint``: the new model).
    """
    from napari_acs.models.checkpoint import load_checkpoint
    from napari_acs.training import FinetuneConfig, finetune

    built = load_checkpoint(init)[1]["create_model"]
    cohort = review.training_folder(include_references=include_references)
    if out_dir is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out_dir = review.state / "finetune" / stamp
    settings = {"model": built["name"], "conv": built["conv"], "task": built["task"], "val_fraction": 0.0,
                "epochs": epochs, "steps_per_epoch": steps_per_epoch, **config}
    return finetune(FinetuneConfig(cohort=cohort, out_dir=Path(out_dir), init=Path(init), **settings),
                    progress=progress, cancel=cancel, on_event=on_event)
