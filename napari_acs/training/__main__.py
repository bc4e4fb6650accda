"""``python -m napari_acs.training <cohort> --out DIR ...``: fine-tuning with the flags of
``napari-acs finetune``; the entry point for ``torchrun --nproc_per_node=N -m napari_acs.training``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from napari_acs.cli_support import run_handler
from napari_acs.training.cli import add_finetune_arguments, run_finetune


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_acs.training",
        description="Fine-tune an ACS or native-3D model (same flags as napari-acs finetune); "
        "run it under torchrun for DistributedDataParallel training.",
    )
    add_finetune_arguments(parser)
    return run_handler(run_finetune, parser.parse_args(argv), "napari_acs.training")


if __name__ == "__main__":
    raise SystemExit(main())
