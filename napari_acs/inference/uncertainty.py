"""How unsure a segmentation is: a per-voxel map and a per-case score that ranks cases for review.

Both come from what the engine predicts for a case (:class:`~napari_acs.inference.engine.CasePrediction`):
the WT / TC / ET probabilities and, with test-time augmentation (``tta``: the 8 mirror
flips, as nnU-Net averages them), for how many flips each region's own probability
reached the threshold (the votes).

- Voxel uncertainty, in ``[0, 1]``: the binary entropy in bits (1 where a region is a
  coin toss, 0 where it is sure), the largest over the regions; of the vote fraction with
  test-time augmentation (where the mirrored predictions disagree), of the probability
  without. A model trained with a Dice loss spreads low probabilities (0.1-0.2) over the
  whole brain, so the probability entropy shows the brain as half-unsure; the votes do not.
- Case score, in ``[0, 1]``: with test-time augmentation the share of the voxels that any
  flip labels whole tumour on which the flips do not all agree (``1 - |all| / |any|``);
  without, ``1 -`` the expected Dice of the whole tumour if the probabilities were
  calibrated (:func:`expected_dice`). 0 when nothing is predicted or probable. How well
  each ranks real errors is measured, not assumed (benchmarks/RESULTS.md, "Uncertainty").
"""

from __future__ import annotations

import numpy as np

from napari_acs.io.labels import REGIONS

#: Probabilities are clipped away from 0 and 1 by this much before taking logarithms.
_EPS = 1e-6
_WT = REGIONS.index("WT")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a yes/no outcome of probability ``p`` (float32, same shape)."""
    p = np.clip(np.asarray(p, dtype=np.float32), _EPS, 1 - _EPS)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def voxel_uncertainty(probabilities: np.ndarray, votes: np.ndarray | None = None, flips: int = 1) -> np.ndarray:
    """float32 ``(X, Y, Z)`` in ``[0, 1]``: the largest binary entropy over the regions, of
    ``votes / flips`` when ``flips > 1``, else of ``probabilities``.

    Args:
        probabilities: ``(R, X, Y, Z)`` region probabilities in ``[0, 1]`` (R = 3: WT, TC, ET).
        votes: ``(R, X, Y, Z)`` counts in ``[0, flips]`` (see the module docstring).
        flips: how many mirror flips were averaged.
    """
    source = probabilities if votes is None or flips <= 1 else np.asarray(votes, np.float32) / flips
    return np.clip(binary_entropy(source).max(axis=0), 0.0, 1.0).astype(np.float32)


def expected_dice(probability: np.ndarray, threshold: float = 0.5) -> float:
    """Expected Dice of the mask ``probability >= threshold`` if ``probability`` were calibrated:
    ``2 sum(p [p >= t]) / (sum(p) + sum([p >= t]))``; 1.0 when neither the mask nor the
    probabilities hold a voxel's worth of tumour (nothing to get wrong)."""
    p = np.asarray(probability, dtype=np.float64)
    mask = p >= threshold
    denominator = p.sum() + mask.sum()
    if denominator < 1.0:
        return 1.0
    return float(2.0 * p[mask].sum() / denominator)


def flip_disagreement(votes: np.ndarray, flips: int) -> float:
    """``1 - |voxels all flips label| / |voxels any flip labels|`` of one region's votes; 0 if none."""
    votes = np.asarray(votes)
    anywhere = np.count_nonzero(votes)
    return 0.0 if anywhere == 0 else 1.0 - np.count_nonzero(votes >= flips) / anywhere


def case_score(probabilities: np.ndarray, votes: np.ndarray | None = None, flips: int = 1,
               threshold: float = 0.5) -> float:
    """Review priority in ``[0, 1]`` of the whole tumour (WT): :func:`flip_disagreement` with
    test-time augmentation, else ``1 -`` :func:`expected_dice`."""
    if votes is not None and flips > 1:
        return flip_disagreement(np.asarray(votes)[_WT], flips)
    return 1.0 - expected_dice(np.asarray(probabilities)[_WT], threshold)
