"""The ``segment`` command line: ``napari-acs segment`` and ``python -m napari_acs.inference``.

One set of flags and one handler for both: ``napari-acs segment`` (:mod:`napari_acs.cli`)
and the module entry point that ``torchrun --nproc_per_node=N -m napari_acs.inference``
starts, where each process segments its share of the cases
(:func:`~napari_acs.inference.shard.segment_sharded`).
"""

from __future__ import annotations

import argparse
import sys

from napari_acs.cli_support import SEQUENCE_FLAGS, CLIError, ProgressBar, print_table, return_freed_memory_promptly


class _SequenceFile(argparse.Action):
    """``--t1c FILE``...: collects ``{sequence: FILE}`` in command-line order (the first is the reference grid)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        files = dict(getattr(namespace, self.dest, None) or {})
        if self.const in files:
            parser.error(f"{option_string} given twice")
        files[self.const] = values
        setattr(namespace, self.dest, files)


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``napari-acs segment``."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="a case folder, one of its files, or a folder of case folders "
                             "(or one case's files with any names: --t1c, --flair, --t1n, --t2w)")
    sequences = parser.add_argument_group(
        "one case from files with any names",
        "each file's sequence (at least one; all on one grid). A missing sequence is a zero-filled input channel: "
        "the result is less reliable, and says so. The output <first file's name>-seg.nii.gz lies on the first "
        "file's grid, labels 1 NCR, 2 ED, 3 ET (BraTS 2023)")
    for flag, alias, sequence, what in SEQUENCE_FLAGS:
        sequences.add_argument(flag, alias, dest="sequence_files", metavar="FILE", action=_SequenceFile,
                               const=sequence, default=None, help=f"the {what} file (.nii / .nii.gz)")
    parser.add_argument("--out", required=True, help="output folder (<case_id>_seg.nii.gz + volumes.csv)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", help="preset name (untrained decoder!) instead of the demo model")
    chosen.add_argument("--checkpoint", help="a napari-acs checkpoint (.safetensors)")
    parser.add_argument("--conv", choices=("acs", "3d"), default="acs", help="with --model: ACS or native 3D")
    parser.add_argument("--tta", action="store_true", help="mirror test-time augmentation (8x slower)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <case_id>_uncertainty.nii.gz, a float32 voxel uncertainty map in [0, 1] "
                             "on the source grid (entropy of the region probabilities; with --tta how much the "
                             "mirror flips disagree), and a score column in volumes.csv (0-1, higher: review first)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write <case_id>_probabilities.nii.gz, float32 (X, Y, Z, 3) WT / TC / ET region "
                             "probabilities on the source grid")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep cases already segmented in --out (e.g. after an interrupted run) and do the rest")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_segment(args: argparse.Namespace) -> int:
    """Segment the inputs (this process's share under torchrun); print the table; 1 if any case failed."""
    from napari_acs.inference.batch import OutputFolderBusy, source_name
    from napari_acs.inference.engine import Segmenter
    from napari_acs.inference.plausibility import model_concerns
    from napari_acs.inference.shard import rank_and_world, segment_sharded
    from napari_acs.io import BratsInputError
    from napari_acs.io.sequences import missing_sequences, missing_warning
    from napari_acs.models.select import select_model

    return_freed_memory_promptly()  # flat memory over a cohort
    rank, world = rank_and_world()
    described: list[str] = []

    def build_engine() -> Segmenter:
        try:
            selected = select_model(args.model, args.checkpoint, conv=args.conv)
            engine = Segmenter(selected.model, device=args.device, tta=args.tta)
        except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
            raise CLIError(f"{args.checkpoint}: {exc}" if args.checkpoint and str(args.checkpoint) not in str(exc)
                           else str(exc)) from exc
        described.append(selected.description)
        if rank == 0:
            print(f"model: {selected.description}", file=sys.stderr)
            for concern in model_concerns(getattr(selected.model, "checkpoint_meta", None)):
                print(f"model warning: {concern.text}", file=sys.stderr)  # a poorly scored model says so
        return engine

    inputs: list = list(args.inputs)
    if args.sequence_files:
        if inputs:
            raise CLIError("give case folders or files as INPUT, or one case's files with --t1c, --flair, --t1n, "
                           "--t2w, not both")
        inputs = [args.sequence_files]
        missing = missing_sequences(args.sequence_files)
        if missing and rank == 0:
            print(f"warning: {missing_warning(missing)}", file=sys.stderr)
    elif not inputs:
        raise CLIError("nothing to segment: give a case folder or file (INPUT), or the sequences' files with "
                       "--t1c, --flair, --t1n, --t2w")
    title = "segment" if world == 1 else f"segment (process 1 of {world})"
    bar = ProgressBar(not args.no_progress and rank == 0, title)
    try:
        results, failure = segment_sharded(inputs, args.out, build_engine, overwrite=args.overwrite,
                                           skip_existing=args.skip_existing, uncertainty=args.uncertainty,
                                           probabilities=args.save_probabilities, progress=bar,
                                           run_info={"argv": sys.argv, "model_descriptions": described})
    except (BratsInputError, FileExistsError, OutputFolderBusy) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    if rank == 0:
        rows = [[r.case_id or source_name(r.source), *(f"{r.volumes_ml.get(k, float('nan')):.1f}" for k in ("WT", "TC", "ET")),
                 *([f"{r.score:.3f}" if r.score is not None else ""] if args.uncertainty else []),
                 f"{r.seconds:.1f}", r.error or ("kept (exists)" if r.skipped else "ok")] for r in results]
        print_table(rows, ["case", "WT mL", "TC mL", "ET mL", *(["score"] if args.uncertainty else []), "s", "status"])
        for r in results:
            for warning in r.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            if r.error:
                print(f"failed: {r.source}: {r.error}", file=sys.stderr)
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return 1 if any(r.error for r in results) else 0
