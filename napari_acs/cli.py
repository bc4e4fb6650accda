"""The ``napari-acs`` command line: a thin argparse front end over the backend.

Each subcommand parses its flags and calls one backend function; heavy imports
(torch, napari) happen inside the handlers so ``napari-acs --help`` is instant.
Exit codes: 0 success, 1 a failure reported to the user, 2 bad usage.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from napari_acs.cli_support import CLIError, ProgressBar, print_table, run_handler
from napari_acs.inference.cli import add_segment_arguments, run_segment


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_acs.demo import run_demo

    return run_demo(headless=args.headless)


def _cmd_models(args: argparse.Namespace) -> int:
    from napari_acs.models.table import model_table

    rows = model_table(args.pattern)
    header = list(rows[0].keys()) if rows else ["preset"]
    print_table([[str(v) for v in r.values()] for r in rows], header)
    return 0


def _cmd_sample_cohort(args: argparse.Namespace) -> int:
    from napari_acs.synthetic import make_cohort

    bar = ProgressBar(not args.no_progress, "sample cohort")
    try:
        paths = make_cohort(args.out, args.n, seed=args.seed, convention=args.convention,
                            overwrite=args.overwrite, progress=bar)
    except FileExistsError as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    print(f"wrote {len(paths)} cases to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_acs.io import BratsInputError
    from napari_acs.io.files import atomic_write_text, check_writable_file
    from napari_acs.metrics.evaluate import evaluate_folders, metrics_csv, summarise
    from napari_acs.metrics.lesionwise import CHALLENGES

    try:
        check_writable_file(args.out, overwrite=args.overwrite)  # before the work, not after it
        rows = evaluate_folders(args.pred_dir, args.ref_dir, challenge=args.challenge)
        atomic_write_text(args.out, metrics_csv(rows + summarise(rows)), overwrite=args.overwrite)
    except (BratsInputError, FileExistsError) as exc:
        raise CLIError(str(exc)) from exc
    summary = summarise(rows)
    print_table([[r["case_id"], r["region"], f"{r['dice']:.3f}", f"{r['hd95']:.2f}",
                  f"{r['sensitivity']:.3f}", f"{r['volume_ml_pred']:.1f}", f"{r['volume_ml_ref']:.1f}",
                  f"{r['lesion_dice']:.3f}", f"{r['lesion_hd95']:.2f}",
                  *(f"{r[k]:.1f}" for k in ("lesion_tp", "lesion_fp", "lesion_fn"))]
                  for r in summary],
                 ["stat", "region", "Dice", "HD95 mm", "sens", "pred mL", "ref mL",
                  "lesion Dice", "lesion HD95 mm", "TP", "FP", "FN"])
    params = CHALLENGES[args.challenge]
    print(f"lesion-wise: BraTS 2023 {args.challenge} (dilation {params.dilation}, lesions > "
          f"{params.threshold_mm3:g} mm^3; TP/FP/FN are lesions per case)")
    print(f"{len(rows) // 3} cases; per-case metrics in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that exists."""
    parser = argparse.ArgumentParser(
        prog="napari-acs",
        description="ACS convolutions for brain-tumour MRI: segment, evaluate, fine-tune, compare.",
    )
    from napari_acs import __version__

    parser.add_argument("--version", action="version", version=f"napari-acs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="open napari with a sample case and the plugin's widgets (headless without a display)",
        description="Open napari with a sample BraTS-like case, the plugin's widgets docked and an "
        "ACS model ready to segment. Without a display (or with --headless) segment the sample "
        "case and print Dice, volumes and time.",
    )
    demo.add_argument("--headless", action="store_true", help="never open a window")
    demo.set_defaults(handler=_cmd_demo)

    models = sub.add_parser("models", help="list model presets, parameters and weight sources")
    models.add_argument("pattern", nargs="?", default="*", help="wildcard over preset names")
    models.set_defaults(handler=_cmd_models)

    segment = sub.add_parser(
        "segment", help="segment BraTS cases into NIfTI label maps",
        description="Segment BraTS cases into <case_id>_seg.nii.gz label maps on each source grid, plus "
        "volumes.csv (written as cases finish). Under torchrun use python -m napari_acs.inference "
        "with the same flags to share the cases among processes or machines.")
    add_segment_arguments(segment)
    segment.set_defaults(handler=run_segment)

    evaluate = sub.add_parser(
        "evaluate", help="BraTS metrics of predicted vs reference segmentations",
        description="Legacy BraTS metrics (Dice, HD95, sensitivity, specificity, volumes) and BraTS "
        "2023 lesion-wise Dice / HD95 with lesion TP/FP/FN counts, per case and region (WT, TC, ET), "
        "with a mean/median summary.")
    evaluate.add_argument("pred_dir", help="folder with <case_id>_seg.nii.gz predictions")
    evaluate.add_argument("ref_dir", help="folder (of case folders) with reference segmentations")
    evaluate.add_argument("--out", required=True, help="CSV of per-case, per-region metrics")
    evaluate.add_argument("--challenge", choices=("GLI", "SSA", "MEN", "PED", "MET"), default="GLI",
                          help="BraTS 2023 lesion-wise parameters: GLI, SSA, PED dilation 3 / lesions "
                               "> 50 mm^3; MEN 1 / 50; MET 1 / 2 (default GLI)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    evaluate.set_defaults(handler=_cmd_evaluate)

    cohort = sub.add_parser("sample-cohort", help="generate a synthetic BraTS-like training cohort")
    cohort.add_argument("out", help="output folder")
    cohort.add_argument("--n", type=int, default=20, help="number of cases (default 20)")
    cohort.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cohort.add_argument("--convention", choices=("brats2021", "brats2023"), default="brats2021",
                        help="file naming and label values")
    cohort.add_argument("--overwrite", action="store_true", help="replace existing case folders")
    cohort.add_argument("--no-progress", action="store_true", help="no progress bar")
    cohort.set_defaults(handler=_cmd_sample_cohort)

    from napari_acs.training.cli import add_compare_parser, add_finetune_parser

    add_finetune_parser(sub)
    add_compare_parser(sub)
    from napari_acs.report.cli import add_report_parser

    add_report_parser(sub)
    from napari_acs.prepare.cli import add_prepare_parser

    add_prepare_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-acs`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return run_handler(handler, args, f"napari-acs {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
