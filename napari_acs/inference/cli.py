"""The ``segment`` command line: ``napari-acs segment`` and ``python -m napari_acs.inference``.

One set of flags and one handler for both: ``napari-acs segment`` (:mod:`napari_acs.cli`)
and the module entry point that ``torchrun --nproc_per_node=N -m napari_acs.inference``
starts, where each process segments its share of the cases
(:func:`~napari_acs.inference.shard.segment_sharded`).
"""

from __future__ import annotations

import argparse
import sys

from napari_acs.cli_support import CLIError, ProgressBar, print_table


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``napari-acs segment``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a case folder, one of its files, or a folder of case folders")
    parser.add_argument("--out", required=True, help="output folder (<case_id>_seg.nii.gz + volumes.csv)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", help="preset name (untrained decoder!) instead of the demo model")
    chosen.add_argument("--checkpoint", help="a napari-acs checkpoint (.safetensors)")
    parser.add_argument("--conv", choices=("acs", "3d"), default="acs", help="with --model: ACS or native 3D")
    parser.add_argument("--tta", action="store_true", help="mirror test-time augmentation (8x slower)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep cases already segmented in --out (e.g. after an interrupted run) and do the rest")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_segment(args: argparse.Namespace) -> int:
    """Segment the inputs (this process's share under torchrun); print the table; 1 if any case failed."""
    from napari_acs.inference.batch import OutputFolderBusy
    from napari_acs.inference.engine import Segmenter
    from napari_acs.inference.shard import rank_and_world, segment_sharded
    from napari_acs.io import BratsInputError
    from napari_acs.models.select import select_model

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
        return engine

    title = "segment" if world == 1 else f"segment (process 1 of {world})"
    bar = ProgressBar(not args.no_progress and rank == 0, title)
    try:
        results, failure = segment_sharded(args.inputs, args.out, build_engine, overwrite=args.overwrite,
                                           skip_existing=args.skip_existing, progress=bar,
                                           run_info={"argv": sys.argv, "model_descriptions": described})
    except (BratsInputError, FileExistsError, OutputFolderBusy) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    if rank == 0:
        rows = [[r.case_id or str(r.source), *(f"{r.volumes_ml.get(k, float('nan')):.1f}" for k in ("WT", "TC", "ET")),
                 f"{r.seconds:.1f}", r.error or ("kept (exists)" if r.skipped else "ok")] for r in results]
        print_table(rows, ["case", "WT mL", "TC mL", "ET mL", "s", "status"])
        for r in results:
            if r.error:
                print(f"failed: {r.source}: {r.error}", file=sys.stderr)
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return 1 if any(r.error for r in results) else 0
