"""Held-out Dice per subset of sequences: a model trained with modality dropout against one
trained without (issue 21, point 4).

Each held-out case is segmented from a subset of its sequences, loaded as a user would
assign them (``load_case(files={...})``: a sequence without a file is a zero-filled channel),
whole case, no TTA. Subsets: all four, each one alone, T1c + FLAIR, all but native T1.
Goal: with all four, the dropout model is no worse than the model without; with T1c + FLAIR
it is within 0.05 of that model with all four.

    python benchmarks/bench_missing_sequences.py --model dropout=RUN/best.safetensors \\
        [--model demo] --cases CASE_DIR ... [--cases-from RUN/config.json --cohort COHORT]

``--model NAME=PATH`` (repeatable; ``demo`` alone is the shipped demo checkpoint).
Held-out cases: ``--cases`` folders and/or the validation ids of a run's ``config.json``
found in ``--cohort``; by default also the two shipped sample cases.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_acs.models.cpu_info import describe_cpu

#: Subsets of sequences (BraTS 2023 names), in the table's order.
SUBSETS: dict[str, tuple[str, ...]] = {
    "all four": ("t1n", "t1c", "t2w", "t2f"),
    "T1 only": ("t1n",),
    "T1c only": ("t1c",),
    "T2 only": ("t2w",),
    "FLAIR only": ("t2f",),
    "T1c + FLAIR": ("t1c", "t2f"),
    "without T1": ("t1c", "t2w", "t2f"),
}
REGIONS = ("WT", "TC", "ET")


def sequence_files(folder: Path) -> dict[str, Path]:
    """``{"t1n": path, ...}`` of a case folder's image files (BraTS 2021 or 2023 names)."""
    from napari_acs.io.sequences import guess_role, guess_sequence

    files = {}
    for path in sorted(folder.glob("*.nii*")):
        if guess_role(path) == "seg":
            continue
        sequence = guess_sequence(path)
        if sequence is not None:
            files[sequence] = path
    return files


def held_out_cases(args: argparse.Namespace) -> list[Path]:
    from napari_acs.io.sample import sample_case_path

    folders = [Path(c) for c in args.cases]
    if args.cases_from:
        val_ids = json.loads(Path(args.cases_from).read_text())["val_ids"]
        folders += [Path(args.cohort) / case_id for case_id in val_ids]
    if not args.no_samples:
        folders += [sample_case_path(i) for i in ("BraTS2021_00000", "BraTS2021_00001")]
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a checkpoint to evaluate; 'demo' alone: the shipped demo model")
    parser.add_argument("--cases", nargs="*", default=[], help="held-out case folders")
    parser.add_argument("--cases-from", help="a run's config.json: its val_ids are held out")
    parser.add_argument("--cohort", help="folder of the --cases-from cohort")
    parser.add_argument("--no-samples", action="store_true", help="leave out the two shipped sample cases")
    args = parser.parse_args()

    import torch

    from napari_acs.inference import Segmenter
    from napari_acs.io import load_case
    from napari_acs.metrics import brats_metrics
    from napari_acs.models.select import demo_checkpoint_path

    torch.set_num_threads(2)
    models = {}
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = Path(path) if path else demo_checkpoint_path()
    folders = held_out_cases(args)
    started = time.perf_counter()
    dice: dict[tuple[str, str], list[dict[str, float]]] = {}
    for name, checkpoint in models.items():
        engine = Segmenter.from_checkpoint(checkpoint, device="cpu")
        for folder in folders:
            reference = load_case(folder)
            files = sequence_files(folder)
            for subset, sequences in SUBSETS.items():
                case = load_case(files={s: files[s] for s in sequences}, case_id=reference.case_id)
                labels = engine.segment(case)
                scores = brats_metrics(labels, reference.label, reference.spacing, case.convention,
                                       ref_convention=reference.convention, challenge=None)
                dice.setdefault((name, subset), []).append({r: scores[r]["dice"] for r in REGIONS})
                print(f"{name} {folder.name} {subset}: "
                      + " / ".join(f"{scores[r]['dice']:.3f}" for r in REGIONS), flush=True)
    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; {len(folders)} held-out cases "
          f"({', '.join(f.name for f in folders)}); whole case, no TTA; {time.perf_counter() - started:.0f} s")
    print("\nMean held-out Dice WT / TC / ET:\n")
    print("| sequences | " + " | ".join(models) + " |")
    print("|---" * (len(models) + 1) + "|")
    for subset in SUBSETS:
        cells = []
        for name in models:
            rows = dice[name, subset]
            cells.append(" / ".join(f"{np.mean([r[region] for r in rows]):.3f}" for region in REGIONS))
        print(f"| {subset} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
