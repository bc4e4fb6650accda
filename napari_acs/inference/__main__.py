"""``python -m napari_acs.inference INPUT... --out DIR``: segmentation with the flags of
``napari-acs segment``; the entry point for ``torchrun --nproc_per_node=N -m napari_acs.inference``,
where each process takes its share of the cases and rank 0 writes one ``volumes.csv``."""

from __future__ import annotations

from collections.abc import Sequence

from napari_acs.cli_support import module_main
from napari_acs.inference.cli import add_segment_arguments, run_segment


def main(argv: Sequence[str] | None = None) -> int:
    return module_main(
        argv, prog="python -m napari_acs.inference", add_arguments=add_segment_arguments, handler=run_segment,
        description="Segment BraTS cases into NIfTI label maps (same flags as napari-acs segment); "
        "run it under torchrun to share the cases among processes or machines.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
