"""``napari-acs prepare``: a raw exam -> a BraTS-named case folder; a segmentation of it -> the reference grid.

``napari-acs prepare --t1c F --flair F [--t1n F] [--t2w F] [--reference t1c] --out FOLDER`` writes the
prepared case (:func:`napari_acs.prepare.prepare_exam`): ``napari-acs segment FOLDER`` segments
it when all four sequences are there (else give the prepared files with the sequence flags).
``napari-acs prepare --write-back SEG --prepared FOLDER --out FILE`` writes that segmentation
on the grid of the exam's reference file (:func:`napari_acs.prepare.to_reference_grid`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_acs.cli_support import SEQUENCE_FLAGS, CLIError, ProgressBar


def add_prepare_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``prepare`` on the ``napari-acs`` subcommands."""
    prepare = sub.add_parser(
        "prepare", help="prepare a raw exam (any names, grids, skull) as a BraTS-like case folder",
        description="Co-register every sequence rigidly to the reference sequence (SimpleITK, mutual "
        "information), resample all onto a 1 mm isotropic grid over the reference's field of view and "
        "extract the brain (deepbet), then write the BraTS-named case folder (with the brain mask, the "
        "transforms and prepare.json) that 'napari-acs segment FOLDER' reads. Steps that are not needed "
        "are skipped. With --write-back, write a segmentation of a prepared case on the reference file's grid.")
    sequences = prepare.add_argument_group("sequences (files with any names; at least the reference)")
    for flag, alias, key, what in SEQUENCE_FLAGS:
        sequences.add_argument(flag, alias, dest=key, metavar="FILE", help=f"the {what} file (.nii / .nii.gz)")
    prepare.add_argument("--reference", default="t1c", help="the sequence whose grid and field of view the "
                         "prepared case takes and the segmentation is written back on (default t1c)")
    prepare.add_argument("--out", required=True,
                         help="the prepared case folder (new, empty or prepared before); with --write-back the "
                              "segmentation file to write (.nii.gz)")
    prepare.add_argument("--brain-extraction", choices=("auto", "always", "never"), default="auto",
                         help="auto: unless the reference is skull-stripped already (default)")
    prepare.add_argument("--convention", choices=("brats2023", "brats2021"), default="brats2023",
                         help="file names and label values of the prepared case (default brats2023: <id>-t1c...)")
    prepare.add_argument("--case-id", help="the prepared case's id (default: the reference file's name)")
    prepare.add_argument("--device", choices=("cpu", "auto"), default="cpu",
                         help="brain extraction on the CPU (default) or on CUDA/MPS when present (auto)")
    back = prepare.add_argument_group("write-back")
    back.add_argument("--write-back", metavar="SEG", help="a segmentation of a prepared case (on its 1 mm grid)")
    back.add_argument("--prepared", metavar="FOLDER", help="with --write-back: the prepared case folder")
    back.add_argument("--overwrite", action="store_true", help="with --write-back: replace an existing file")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")
    prepare.set_defaults(handler=run_prepare)
    return prepare


def run_prepare(args: argparse.Namespace) -> int:
    """The ``prepare`` handler: prepare the exam, or write a segmentation back."""
    if args.write_back is not None:
        return _write_back(args)
    files = {key: getattr(args, key) for _, _, key, _ in SEQUENCE_FLAGS if getattr(args, key) is not None}
    if not files:
        raise CLIError("no sequence given: pass at least --t1c FILE (or the --reference sequence)")
    from napari_acs.io import BratsInputError
    from napari_acs.io.sequences import canonical_sequence
    from napari_acs.prepare.exam import PrepareSettings, prepare_exam

    bar = ProgressBar(not args.no_progress, "prepare")
    try:
        exam = prepare_exam(files, reference=args.reference, out_dir=args.out, progress=bar,
                            settings=PrepareSettings(brain_extraction=args.brain_extraction),
                            convention=args.convention, case_id=args.case_id, device=args.device)
    except (BratsInputError, FileExistsError) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    case = exam.case
    print(f"{'reused' if exam.reused else 'prepared'} {case.case_id} in {exam.folder}: "
          f"{' x '.join(map(str, case.shape))} voxels of 1 mm, brain {exam.brain_ml:.0f} mL")
    for line in exam.summary():
        print(f"  {line}")
    for warning in exam.warnings:
        print(f"warning: {warning}")
    given = " ".join(f"--{canonical_sequence(kind)} {path}" for kind, path in case.files.items())
    target = str(exam.folder) if not case.missing else given
    print(f"next: napari-acs segment {target} --out SEGDIR, then napari-acs prepare --write-back "
          f"SEGDIR/<segmentation> --prepared {exam.folder} --out <file on {exam.inputs[exam.reference].name}'s grid>")
    return 0


def _write_back(args: argparse.Namespace) -> int:
    if args.prepared is None:
        raise CLIError("--write-back needs --prepared FOLDER (the prepared case the segmentation was made on)")
    from napari_acs.io import BratsInputError
    from napari_acs.prepare.writeback import to_reference_grid

    try:
        out = to_reference_grid(args.write_back, args.prepared, args.out, overwrite=args.overwrite)
    except (BratsInputError, FileExistsError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote {out} on the grid of {_reference_name(Path(args.prepared))}")
    return 0


def _reference_name(folder: Path) -> str:
    from napari_acs.prepare.cache import read_manifest

    key = read_manifest(folder)["key"]
    return Path(key["inputs"][key["reference"]]["path"]).name
