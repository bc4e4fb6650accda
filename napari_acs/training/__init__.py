"""Fine-tuning: cohort caching, patch sampling, augmentation, losses, the loop, checkpoints,
distributed training (``torchrun -m napari_acs.training``) and the ACS-vs-3D comparison.

Names are imported on first use, so ``napari_acs.training.cli`` (the command-line
flags) loads without torch, timm or MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_acs import _on_first_use

_EXPORTS = {
    "CompareResult": "napari_acs.training.comparison",
    "compare": "napari_acs.training.comparison",
    "FinetuneConfig": "napari_acs.training.config",
    "FinetuneResult": "napari_acs.training.config",
    "finetune": "napari_acs.training.loop",
    "LabelsCSVError": "napari_acs.training.mgmt",
    "match_labels": "napari_acs.training.mgmt",
    "read_mgmt_csv": "napari_acs.training.mgmt",
    "subject_number": "napari_acs.training.mgmt",
    "TrainingStateError": "napari_acs.training.state",
    "read_history": "napari_acs.training.state",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from napari_acs.training.comparison import CompareResult, compare
    from napari_acs.training.config import FinetuneConfig, FinetuneResult
    from napari_acs.training.loop import finetune
    from napari_acs.training.mgmt import LabelsCSVError, match_labels, read_mgmt_csv, subject_number
    from napari_acs.training.state import TrainingStateError, read_history

__getattr__ = _on_first_use(__name__, _EXPORTS)
