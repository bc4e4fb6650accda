"""The radiologist's loop measured end to end (issue 17, point 4).

A weak model (ACS lite0, ImageNet encoder, ``--weak-steps`` steps on ``--weak-train``
synthetic cases) segments a pool of ``--pool`` other cases; ``--pick`` of them are
"corrected" with their reference labels, as a reader would, and the weak model is
fine-tuned on those for a fixed budget (``--steps`` optimiser steps from the weak
checkpoint, ``FinetuneConfig.init``). Arms: the ``--pick`` cases the model is most
uncertain about (the review score, 8-flip TTA), and ``--random-draws`` random choices of
``--pick`` cases. Reported: mean WT / TC / ET Dice on ``--held-out`` other cases before
and after, per arm. Goals: the corrected model gains >= 0.05 mean Dice; uncertainty-chosen
cases gain at least as much as random ones.

    python benchmarks/bench_review_loop.py [--pool 12] [--pick 4] [--steps 100] [--seed 0] [--work DIR]

``--seed`` sets the fine-tuning seed and the random draws (the weak model, the pool and the
held-out cases stay the same), so runs with several seeds measure how much of a gain is chance.
"""

from __future__ import annotations

import argparse
import random
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


def arm(name: str, pool: Path, work: Path, weak: Path, chosen: list[str] | None, args) -> tuple[Path, list[str]]:
    """One loop: a fresh review of the pool (links), segment, correct ``chosen`` (or the most
    uncertain), fine-tune on the corrections; returns the new checkpoint and the cases."""
    from napari_acs.inference import Segmenter
    from napari_acs.review import ReviewCohort, finetune_on_corrections

    folder = work / (f"arm_{name}" if args.seed == 0 else f"arm_{name}_seed{args.seed}")
    folder.mkdir(parents=True, exist_ok=True)
    for case in sorted(p for p in pool.iterdir() if p.is_dir()):
        if not (folder / case.name).exists():
            (folder / case.name).symlink_to(case.resolve(), target_is_directory=True)
    review = ReviewCohort(folder)
    review.segment_all(Segmenter.from_checkpoint(weak, device="cpu", tta=True))
    chosen = chosen or review.review_order()[: args.pick]
    for case_id in chosen:
        case = review.load(case_id)
        review.accept(case_id, case.label, model="reference labels (as a reader's correction)", case=case)
    out = work / folder.name.replace("arm_", "finetuned_", 1)
    result = finetune_on_corrections(review, weak, out, epochs=1,
                                     steps_per_epoch=args.steps, patch_size=(64, 64, 64), lr=args.lr,
                                     seed=args.seed, overwrite=True)
    return result.last_checkpoint, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=12)
    parser.add_argument("--pick", type=int, default=4)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--weak-train", type=int, default=4)
    parser.add_argument("--weak-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning budget, optimiser steps (default 100)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--random-draws", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning seed and random draws (default 0)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/napari_acs_bench_review_loop"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()
    work = args.work
    weak = weak_model(work, args.weak_train, args.weak_steps)
    pool = cohort(work / f"pool_{args.pool}", args.pool, 202)
    held = sorted(p for p in cohort(work / f"held_{args.held_out}", args.held_out, 303).iterdir() if p.is_dir())
    rows = [("weak model (before)", "-", held_out_dice(weak, held))]
    checkpoint, chosen = arm("uncertain", pool, work, weak, None, args)
    rows.append(("4 most uncertain, corrected", ", ".join(c[-3:] for c in chosen), held_out_dice(checkpoint, held)))
    ids = sorted(p.name for p in pool.iterdir() if p.is_dir())
    for draw in range(args.random_draws):
        picked = random.Random(args.seed * 1000 + draw).sample(ids, args.pick)
        checkpoint, chosen = arm(f"random{draw}", pool, work, weak, picked, args)
        rows.append((f"4 random (draw {draw}), corrected", ", ".join(c[-3:] for c in chosen),
                     held_out_dice(checkpoint, held)))
    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; weak model {args.weak_train} cases x "
          f"{args.weak_steps} steps; pool {args.pool}, pick {args.pick}, fine-tune {args.steps} steps at 64^3 "
          f"lr {args.lr:g}, seed {args.seed}; held-out {args.held_out} cases {SHAPE}; {time.perf_counter() - started:.0f} s")
    print("| model | cases corrected | WT | TC | ET | mean | gain |\n|---|---|---|---|---|---|---|")
    before = rows[0][2]["mean"]
    for name, cases, dice in rows:
        print(f"| {name} | {cases} | {dice['WT']:.3f} | {dice['TC']:.3f} | {dice['ET']:.3f} | {dice['mean']:.3f} | "
              f"{dice['mean'] - before:+.3f} |")


if __name__ == "__main__":
    main()
