"""The radiologist's loop measured end to end (issue 17, point 4).

A weak model (ACS lite0, ImageNet encoder, ``--weak-steps`` steps on ``--weak-train``
synthetic cases) segments a pool of ``--pool`` other cases once, with the 8-flip TTA that
gives the review score; ``--pick`` of them are "corrected" with their reference labels, as
a reader would, and the weak model is fine-tuned on those for a fixed budget (``--steps``
optimiser steps from the weak checkpoint, ``FinetuneConfig.init``). Arms: the ``--pick``
cases the model is most uncertain about (the browser's review order), ``--random-draws``
random choices of ``--pick`` cases, and with ``--stratified`` the most uncertain case in
each of ``--pick`` bins of predicted tumour volume. Each arm runs once per ``--seeds``
value (the fine-tuning seed; it also seeds the random draws; the weak model, the pool and
the held-out cases stay the same). Reported: mean WT / TC / ET Dice on ``--held-out``
other cases before and after, per arm and seed, and each arm's gain over all its runs.
Goals: the corrected model gains >= 0.05 mean Dice; uncertainty-chosen cases gain at
least as much as random ones.

    python benchmarks/bench_review_loop.py [--seeds 0 1 2 3] [--random-draws 3] [--stratified] [--work DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from pathlib import Path

from napari_acs.models.cpu_info import describe_cpu

SHAPE = (160, 160, 128)


def cohort(path: Path, n: int, seed: int) -> Path:
    from napari_acs.synthetic import make_cohort

    if not path.is_dir():
        make_cohort(path, n, seed=seed, shape=SHAPE, workers=1)
    return path


def weak_model(work: Path, n_train: int, steps: int) -> Path:
    """A briefly trained checkpoint (made once in ``work``)."""
    from napari_acs.training import FinetuneConfig, finetune

    run = work / f"weak_{n_train}_{steps}"
    if not (run / "last.safetensors").is_file():
        finetune(FinetuneConfig(cohort=cohort(work / f"train_{n_train}", n_train, 101), out_dir=run, epochs=1,
                                steps_per_epoch=steps, patch_size=(64, 64, 64), val_fraction=0, overwrite=True,
                                seed=0))
    return run / "last.safetensors"


def held_out_dice(checkpoint: Path, folders: list[Path]) -> dict[str, float]:
    """Mean Dice per region over ``folders``, and their mean."""
    from napari_acs.inference import Segmenter
    from napari_acs.io import load_case
    from napari_acs.metrics import brats_metrics

    engine = Segmenter.from_checkpoint(checkpoint, device="cpu")
    per_region: dict[str, list[float]] = {"WT": [], "TC": [], "ET": []}
    for folder in folders:
        case = load_case(folder)
        metrics = brats_metrics(engine.segment(case), case.label, case.spacing, case.convention, challenge=None)
        for region in per_region:
            per_region[region].append(metrics[region]["dice"])
    out = {region: statistics.mean(values) for region, values in per_region.items()}
    out["mean"] = statistics.mean(out.values())
    return out


def reviewed_pool(pool: Path, work: Path, weak: Path) -> Path:
    """The pool segmented once by the weak model with TTA (the review score): a review folder
    whose cases link to the pool's; every arm starts from a copy of it."""
    from napari_acs.inference import Segmenter
    from napari_acs.review import ReviewCohort

    folder = work / "review_pool"
    folder.mkdir(parents=True, exist_ok=True)
    for case in sorted(p for p in pool.iterdir() if p.is_dir()):
        if not (folder / case.name).exists():
            (folder / case.name).symlink_to(case.resolve(), target_is_directory=True)
    ReviewCohort(folder).segment_all(Segmenter.from_checkpoint(weak, device="cpu", tta=True))
    return folder


def size_stratified(review, pick: int) -> list[str]:
    """The most uncertain case in each of ``pick`` bins of predicted WT volume (an experiment:
    uncertainty alone favours small tumours, whose boundary is a larger share of their volume)."""
    import numpy as np

    entries = sorted(review.entries(), key=lambda e: e.volumes_ml["WT"])
    return [max(part, key=lambda e: e.score).case_id for part in np.array_split(np.array(entries, dtype=object), pick)]


def arm(name: str, reviewed: Path, work: Path, weak: Path, chosen: list[str], seed: int, args) -> Path:
    """One loop from the segmented pool: correct ``chosen`` with their reference labels and
    fine-tune the weak model on them; returns the new checkpoint."""
    from napari_acs.review import ReviewCohort, finetune_on_corrections

    folder = work / f"arm_{name}_seed{seed}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(reviewed, folder, symlinks=True)
    review = ReviewCohort(folder)
    for case_id in chosen:
        case = review.load(case_id)
        review.accept(case_id, case.label, model="reference labels (as a reader's correction)", case=case)
    result = finetune_on_corrections(review, weak, work / f"finetuned_{name}_seed{seed}", epochs=1,
                                     steps_per_epoch=args.steps, patch_size=(64, 64, 64), lr=args.lr,
                                     seed=seed, overwrite=True)
    return result.last_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=12)
    parser.add_argument("--pick", type=int, default=4)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--weak-train", type=int, default=4)
    parser.add_argument("--weak-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning budget, optimiser steps (default 100)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--random-draws", type=int, default=2, help="random choices per seed (default 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="fine-tuning seeds; each also seeds its random draws (default 0)")
    parser.add_argument("--stratified", action="store_true",
                        help="also the arm of the most uncertain case per predicted-volume bin")
    parser.add_argument("--work", type=Path, default=Path("/tmp/napari_acs_bench_review_loop"))
    args = parser.parse_args()

    import torch

    from napari_acs.review import ReviewCohort

    torch.set_num_threads(2)
    started = time.perf_counter()
    work = args.work
    weak = weak_model(work, args.weak_train, args.weak_steps)
    pool = cohort(work / f"pool_{args.pool}", args.pool, 202)
    held = sorted(p for p in cohort(work / f"held_{args.held_out}", args.held_out, 303).iterdir() if p.is_dir())
    reviewed = reviewed_pool(pool, work, weak)
    review = ReviewCohort(reviewed)
    choices = {"uncertain": review.review_order()[: args.pick]}
    if args.stratified:
        choices["stratified"] = size_stratified(review, args.pick)
    before = held_out_dice(weak, held)
    rows = [("weak model (before)", "-", "-", before)]
    gains: dict[str, list[float]] = {}
    for seed in args.seeds:
        draws = {f"random{d}": random.Random(seed * 1000 + d).sample(review.case_ids, args.pick)
                 for d in range(args.random_draws)}
        for name, chosen in {**choices, **draws}.items():
            dice = held_out_dice(arm(name, reviewed, work, weak, chosen, seed, args), held)
            rows.append((name, seed, ", ".join(c[-3:] for c in chosen), dice))
            gains.setdefault(name.rstrip("0123456789"), []).append(dice["mean"] - before["mean"])
            print(f"seed {seed} {name}: mean Dice {dice['mean']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; weak model {args.weak_train} cases x "
          f"{args.weak_steps} steps; pool {args.pool}, pick {args.pick}, fine-tune {args.steps} steps at 64^3 "
          f"lr {args.lr:g}, seeds {args.seeds}; held-out {args.held_out} cases {SHAPE}; "
          f"{time.perf_counter() - started:.0f} s")
    print("| arm | seed | cases corrected | WT | TC | ET | mean | gain |\n|---|---|---|---|---|---|---|---|")
    for name, seed, cases, dice in rows:
        print(f"| {name} | {seed} | {cases} | {dice['WT']:.3f} | {dice['TC']:.3f} | {dice['ET']:.3f} | "
              f"{dice['mean']:.3f} | {dice['mean'] - before['mean']:+.3f} |")
    print("\n| arm | runs | mean gain | sd | min | max |\n|---|---|---|---|---|---|")
    for name, values in gains.items():
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"| {name} | {len(values)} | {statistics.mean(values):+.3f} | {sd:.3f} | {min(values):+.3f} | "
              f"{max(values):+.3f} |")


if __name__ == "__main__":
    main()
