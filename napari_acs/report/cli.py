"""``napari-acs report CASE --seg PRED --out report.png|pdf [--model CHECKPOINT] [--uncertainty SCORE]``.

Everything that can be checked before the work is checked first (output suffix, an existing
output, the files given), and each refusal is one line naming the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_acs.cli_support import CLIError

SEQUENCE_CHOICES = ("FLAIR", "T1ce", "T1c", "T2", "T1")


def add_report_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``report`` on the ``napari-acs`` subcommands."""
    report = sub.add_parser(
        "report", help="one-page PNG or PDF report of a segmentation (slices, volumes, metrics, model card)",
        description="Write a one-page case report: axial, coronal and sagittal slices through the tumour's "
        "centre with the segmentation overlay and a legend, the volumes per region (mL), the legacy and BraTS "
        "2023 lesion-wise metrics when the case folder holds a reference segmentation, and the model card. "
        "Research use only, not for diagnosis.")
    report.add_argument("case", help="BraTS case folder (or one of its files)")
    report.add_argument("--seg", required=True, help="the segmentation to report on (NIfTI on the case's grid)")
    report.add_argument("--out", required=True, help="the report file: .png or .pdf")
    report.add_argument("--model", help="checkpoint that made the segmentation (its model card goes in the report)")
    report.add_argument("--sequence", choices=SEQUENCE_CHOICES, default="FLAIR",
                        help="the sequence under the overlay (default FLAIR)")
    report.add_argument("--challenge", choices=("GLI", "SSA", "MEN", "PED", "MET"), default="GLI",
                        help="BraTS 2023 lesion-wise parameters (default GLI)")
    report.add_argument("--uncertainty", type=float, metavar="SCORE",
                        help="the case's uncertainty score in [0, 1] (1 = least certain), e.g. from the review "
                             "cohort, shown in the report")
    report.add_argument("--no-reference", action="store_true",
                        help="ignore the case folder's reference segmentation (volumes only)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report")
    report.set_defaults(handler=run_report)
    return report


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` command: load, check, draw, write atomically."""
    from napari_acs.io import BratsInputError, load_case
    from napari_acs.io.segmentation import read_segmentation
    from napari_acs.report.figures import ReportError, check_destination, check_uncertainty

    try:
        check_destination(args.out, overwrite=args.overwrite)  # before any file is read
        check_uncertainty(args.uncertainty)
        for path, what in ((args.case, "case"), (args.seg, "segmentation"), (args.model, "checkpoint")):
            if path is not None and not Path(path).exists():
                raise CLIError(f"{path}: {what} not found")
        case = load_case(args.case)
        labels = read_segmentation(args.seg, case)
        card = _card(args.model)
        from napari_acs.report.case_report import write_report

        reference = None if args.no_reference else case.label
        written = write_report(case, labels, args.out, reference=reference, model_card=card,
                               uncertainty=args.uncertainty, sequence=args.sequence, challenge=args.challenge, overwrite=args.overwrite)
    except (BratsInputError, ReportError, FileExistsError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote {written}" + ("" if reference is not None else " (no reference segmentation: volumes only)"))
    return 0


def _card(checkpoint: str | None):
    if checkpoint is None:
        return None
    from napari_acs.models.checkpoint import CheckpointError
    from napari_acs.report.card import model_card_from_checkpoint

    try:
        return model_card_from_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from exc
