"""``python -m napari_acs.inference INPUT... --out DIR``: segmentation with the flags of
``napari-acs segment``; the entry point for ``torchrun --nproc_per_node=N -m napari_acs.inference``,
where each process takes its share of the cases and rank 0 writes one ``volumes.csv``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from napari_acs.cli_support import run_handler
from napari_acs.inference.cli import add_segment_arguments, run_segment


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_acs.inference",
        description="Segment BraTS cases into NIfTI label maps (same flags as napari-acs segment); "
        "run it under torchrun to share the cases among processes or machines.",
    )
    add_segment_arguments(parser)
    return run_handler(run_segment, parser.parse_args(argv), "napari_acs.inference")


if __name__ == "__main__":
    raise SystemExit(main())
