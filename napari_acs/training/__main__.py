"""``python -m napari_acs.training <cohort> --out DIR ...``: fine-tuning with the flags of
``napari-acs finetune``; the entry point for ``torchrun --nproc_per_node=N -m napari_acs.training``."""

from __future__ import annotations

from collections.abc import Sequence

from napari_acs.cli_support import module_main
from napari_acs.training.cli import add_finetune_arguments, run_finetune


def main(argv: Sequence[str] | None = None) -> int:
    return module_main(
        argv, prog="python -m napari_acs.training", add_arguments=add_finetune_arguments, handler=run_finetune,
        description="Fine-tune an ACS or native-3D model (same flags as napari-acs finetune); "
        "run it under torchrun for DistributedDataParallel training.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
