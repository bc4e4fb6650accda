"""Uncertainty: the voxel map, the case score, the engine's prediction with probabilities, maps saved on the source grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_acs.inference import Segmenter
from napari_acs.inference.uncertainty import case_score, expected_dice, flip_disagreement, voxel_uncertainty
from napari_acs.io import BratsInputError, load_case
from napari_acs.io.sample import sample_case_path
from napari_acs.io.writer import save_map
from napari_acs.models.checkpoint import load_model
from napari_acs.models.select import demo_checkpoint_path


def test_voxel_uncertainty_is_the_largest_region_entropy_in_bits() -> None:
    probabilities = np.zeros((3, 4, 1, 1), np.float32)
    probabilities[:, 0] = 0.0  # sure: no tumour
    probabilities[:, 1] = 1.0  # sure: tumour
    probabilities[:, 2, 0, 0] = [0.99, 0.5, 0.01]  # one region undecided
    probabilities[:, 3, 0, 0] = [0.9, 0.2, 0.1]
    u = voxel_uncertainty(probabilities)[:, 0, 0]
    assert u.dtype == np.float32 and u.shape == (4,)
    assert u[0] == pytest.approx(0.0, abs=1e-4) and u[1] == pytest.approx(0.0, abs=1e-4)
    assert u[2] == pytest.approx(1.0)
    binary_entropy = lambda p: -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # noqa: E731
    assert u[3] == pytest.approx(binary_entropy(0.2), rel=1e-5)
    # with test-time augmentation the flips' votes count, not a Dice-trained model's low probabilities
    votes = np.zeros((3, 4, 1, 1), np.uint8)
    votes[:, 1] = 8  # every flip agrees: tumour
    votes[:, 2, 0, 0] = [8, 4, 0]  # half the flips see TC
    votes[:, 3, 0, 0] = [8, 0, 0]
    v = voxel_uncertainty(probabilities, votes, flips=8)[:, 0, 0]
    np.testing.assert_allclose(v, [0.0, 0.0, 1.0, 0.0], atol=1e-4)


def test_expected_dice_is_the_mean_dice_of_masks_drawn_from_calibrated_probabilities() -> None:
    rng = np.random.default_rng(0)
    probability = np.clip(rng.normal(0.5, 0.35, size=(20, 20, 20)), 0, 1)
    mask = probability >= 0.5
    draws = rng.random((200, *probability.shape)) < probability  # "true" tumours the model believes in
    dice = [2 * (d & mask).sum() / (d.sum() + mask.sum()) for d in draws]
    assert expected_dice(probability) == pytest.approx(np.mean(dice), abs=0.01)


def test_case_score_ranks_unsure_predictions_first() -> None:
    shape = (3, 30, 30, 30)
    sure, unsure, empty = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    sure[:, 10:20, 10:20, 10:20] = 0.99
    unsure[:, 10:20, 10:20, 10:20] = 0.6
    unsure[:, 8:22, 8:22, 8:22] = np.maximum(unsure[:, 8:22, 8:22, 8:22], 0.3)  # a probable rim left out
    assert case_score(empty) == 0.0  # nothing predicted, nothing probable
    assert 0.0 <= case_score(sure) < 0.02
    assert case_score(unsure) > case_score(sure) + 0.2
    assert expected_dice(np.full((3, 3, 3), 0.5)) == pytest.approx(2 / 3)
    # with TTA: the share of the voxels any flip labels on which the flips do not all agree
    votes = np.zeros(shape, np.uint8)
    votes[:, 10:20, 10:20, 10:20] = 8
    votes[:, 10:20, 10:20, 20:30] = 3
    assert flip_disagreement(votes[0], 8) == pytest.approx(0.5)
    assert case_score(unsure, votes, 8) == pytest.approx(0.5)
    assert case_score(unsure, np.zeros(shape, np.uint8), 8) == 0.0


@pytest.fixture(scope="module")
def sample():
    return load_case(sample_case_path())


@pytest.fixture(scope="module")
def engine():
    return Segmenter(load_model(demo_checkpoint_path()), device="cpu")


@pytest.fixture(scope="module")
def prediction(sample, engine):
    return engine.predict_case(sample)


def test_predict_case_keeps_the_probabilities_of_the_labels(sample, engine, prediction) -> None:
    engine_labels = prediction.labels
    np.testing.assert_array_equal(engine_labels, engine.segment(sample))
    assert prediction.flips == 1 and set(np.unique(prediction.votes)) <= {0, 1}
    probabilities = prediction.probabilities
    assert probabilities.shape == (3, *sample.shape) and probabilities.dtype == np.float32
    outside = np.ones(sample.shape, bool)
    outside[prediction.box] = False
    assert not probabilities[:, outside].any()  # nothing outside the brain's box
    assert ((probabilities >= 0.5).any(axis=0) == (engine_labels > 0)).all()  # what was labelled
    u = prediction.uncertainty
    assert u.shape == sample.shape and 0.0 <= u.min() and u.max() <= 1.0
    assert u[engine_labels > 0].mean() > u[outside].mean()  # unsure at the tumour, sure far from it
    assert 0.0 < prediction.score < 1.0


@pytest.mark.slow
def test_tta_votes_and_the_score(sample) -> None:
    with_tta = Segmenter(load_model(demo_checkpoint_path()), device="cpu", tta=True).predict_case(sample)
    assert with_tta.flips == 8 and with_tta.votes.max() == 8
    assert 0.0 < with_tta.score < 1.0
    wt = with_tta.votes[0]
    u = with_tta.uncertainty
    split = (wt > 0) & (wt < 8)  # the flips disagree on the whole tumour: at least 1 bit * H(1/8)
    assert split.any() and u[with_tta.box][split].min() >= 0.54
    assert u[with_tta.labels == 0].mean() < 0.05  # the brain far from the tumour is sure


def test_maps_are_saved_on_the_source_grid(tmp_path, sample, prediction) -> None:
    source = nib.load(sample.files["flair"])
    written = save_map(prediction.uncertainty, sample, tmp_path / "u.nii.gz")
    image = nib.load(written)
    assert image.shape == source.shape and np.allclose(image.affine, source.affine)
    assert image.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(image.dataobj), sample.source.to_source(prediction.uncertainty))
    probs = nib.load(save_map(prediction.probabilities, sample, tmp_path / "p.nii.gz"))
    assert probs.shape == (*source.shape, 3)
    with pytest.raises(BratsInputError, match="exists"):
        save_map(prediction.uncertainty, sample, tmp_path / "u.nii.gz")
    with pytest.raises(BratsInputError, match="does not match"):
        save_map(prediction.uncertainty[:-1], sample, tmp_path / "v.nii.gz")
