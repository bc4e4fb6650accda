"""Does the uncertainty score rank cases by how wrong the model is? (issue 17, point 2)

Trains a deliberately weak model (``--train`` synthetic cases, ``--steps`` optimiser
steps, ImageNet-initialised ACS ``tf_efficientnet_lite0``), segments a pool of
``--pool`` other synthetic cases with it, with and without the 8-flip test-time
augmentation, and reports per case the WT Dice against the reference and the candidate
scores, then Spearman's rank correlation of each score with ``1 - WT Dice`` (goal >= 0.5):

- ``flip disagreement`` (TTA; the product's score): 1 - |all flips WT| / |any flip WT|
- ``1 - expected Dice`` (no TTA; the product's score without TTA), and with TTA
- ``mean vote entropy in WT`` (TTA): the voxel map's mean where any flip labels WT

    python benchmarks/bench_uncertainty.py [--pool 12] [--train 4] [--steps 200] [--work DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from napari_acs.models.cpu_info import describe_cpu


def weak_model(work: Path, n_train: int, steps: int, shape: tuple[int, int, int]) -> Path:
    """A briefly trained checkpoint (made once in ``work``)."""
    from napari_acs.synthetic import make_cohort
    from napari_acs.training import FinetuneConfig, finetune

    run = work / f"weak_{n_train}_{steps}"
    checkpoint = run / "last.safetensors"
    if not checkpoint.is_file():
        cohort = work / f"train_{n_train}"
        if not cohort.is_dir():
            make_cohort(cohort, n_train, seed=101, shape=shape, workers=1)
        finetune(FinetuneConfig(cohort=cohort, out_dir=run, epochs=1, steps_per_epoch=steps,
                                patch_size=(64, 64, 64), val_fraction=0, overwrite=True, seed=0))
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=12, help="cases to rank (default 12)")
    parser.add_argument("--train", type=int, default=4, help="cases the weak model is trained on (default 4)")
    parser.add_argument("--steps", type=int, default=200, help="its optimiser steps (default 200)")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 128), help="case shape (default 160 160 128)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/napari_acs_bench_uncertainty"))
    args = parser.parse_args()

    import torch

    from napari_acs.inference import Segmenter
    from napari_acs.inference.uncertainty import expected_dice, flip_disagreement, voxel_uncertainty
    from napari_acs.io import load_case
    from napari_acs.metrics import brats_metrics
    from napari_acs.synthetic import make_cohort

    torch.set_num_threads(2)
    shape = tuple(args.shape)
    started = time.perf_counter()
    checkpoint = weak_model(args.work, args.train, args.steps, shape)
    pool_dir = args.work / f"pool_{args.pool}"
    if not pool_dir.is_dir():
        make_cohort(pool_dir, args.pool, seed=202, shape=shape, workers=1)
    with_tta = Segmenter.from_checkpoint(checkpoint, device="cpu", tta=True)
    plain = Segmenter.from_checkpoint(checkpoint, device="cpu")
    rows = []
    for folder in sorted(p for p in pool_dir.iterdir() if p.is_dir()):
        case = load_case(folder)
        tta = with_tta.predict_case(case)
        once = plain.predict_case(case)
        wt_dice = brats_metrics(tta.labels, case.label, case.spacing, case.convention, challenge=None)["WT"]["dice"]
        votes_wt = tta.votes[0]
        map_ = voxel_uncertainty(tta.cropped, tta.votes, tta.flips)
        rows.append({
            "case": case.case_id, "WT Dice": wt_dice,
            "flip disagreement": flip_disagreement(votes_wt, tta.flips),
            "1 - expected Dice (no TTA)": 1 - expected_dice(once.cropped[0]),
            "1 - expected Dice (TTA)": 1 - expected_dice(tta.cropped[0]),
            "mean vote entropy in WT": float(map_[votes_wt > 0].mean()) if (votes_wt > 0).any() else 0.0,
        })
    scores = [k for k in rows[0] if k not in ("case", "WT Dice")]
    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; weak model: {args.train} cases, {args.steps} "
          f"steps at 64^3; pool {args.pool} cases {shape}; {time.perf_counter() - started:.0f} s in all")
    print("| case | WT Dice | " + " | ".join(scores) + " |")
    print("|---" * (len(scores) + 2) + "|")
    for r in rows:
        print(f"| {r['case']} | {r['WT Dice']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in scores) + " |")
    error = [1 - r["WT Dice"] for r in rows]
    print("\n| score | Spearman rho with 1 - WT Dice |\n|---|---|")
    for k in scores:
        print(f"| {k} | {spearmanr([r[k] for r in rows], error).statistic:.2f} |")


if __name__ == "__main__":
    main()
