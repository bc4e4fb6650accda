"""The radiologist's loop from Python: segment a cohort, correct the least certain cases, fine-tune on them."""

from __future__ import annotations

import statistics

import pytest
import torch

from napari_acs.inference import Segmenter
from napari_acs.io import load_case
from napari_acs.metrics import brats_metrics
from napari_acs.models import create_model, save_checkpoint
from napari_acs.models.checkpoint import load_checkpoint
from napari_acs.review import ReviewCohort, finetune_on_corrections
from napari_acs.synthetic import make_cohort


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _wt_dice(checkpoint, folders) -> float:
    engine = Segmenter.from_checkpoint(checkpoint, device="cpu")
    scores = []
    for folder in folders:
        case = load_case(folder)
        scores.append(brats_metrics(engine.segment(case), case.label, case.spacing, case.convention,
                                    challenge=None)["WT"]["dice"])
    return statistics.mean(scores)


@pytest.mark.slow
def test_correcting_the_least_certain_cases_and_fine_tuning_improves_held_out_dice(tmp_path) -> None:
    pool = tmp_path / "pool"
    make_cohort(pool, 3, seed=21, shape=(48, 48, 40), workers=1)
    held = make_cohort(tmp_path / "held", 2, seed=22, shape=(48, 48, 40), workers=1)
    torch.manual_seed(0)  # an ImageNet encoder with an untrained decoder: a weak model
    weak = save_checkpoint(create_model("tf_efficientnet_lite0", conv="acs"), tmp_path / "weak.safetensors",
                           normalisation="zscore_brain", patch_size=[32, 32, 32])
    review = ReviewCohort(pool)
    review.segment_all(Segmenter.from_checkpoint(weak, device="cpu"))
    chosen = review.review_order()[:2]
    for case_id in chosen:  # the reader's corrections: here the reference labels
        case = review.load(case_id)
        review.accept(case_id, case.label, model="weak", case=case)
    assert [e.status for e in review.entries() if e.case_id in chosen] == ["corrected", "corrected"]
    result = finetune_on_corrections(review, weak, tmp_path / "tuned", epochs=1, steps_per_epoch=40,
                                     patch_size=32, batch_size=2, lr=5e-3, schedule="constant")
    assert sorted(result.train_ids) == sorted(chosen)  # trained on the corrected cases only
    meta = load_checkpoint(result.last_checkpoint)[1]["meta"]
    assert meta["training"]["config"]["init"] == str(weak)
    before, after = _wt_dice(weak, held), _wt_dice(result.last_checkpoint, held)
    assert after > before + 0.1
