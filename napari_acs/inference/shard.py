"""A cohort sharded over processes or machines by ``torchrun``: one engine per process.

``torchrun --nproc_per_node=N -m napari_acs.inference INPUT... --out DIR`` starts N
processes (and more on other machines with ``--nnodes``); each takes every N-th case
(:func:`~napari_acs.inference.batch.segment_cases` with ``shard=(rank, world)``) and
writes its rows to ``volumes.rank<R>.csv`` as it goes. At the end the processes gather
their results over PyTorch's own collective layer (Gloo) and rank 0 writes one merged
``volumes.csv`` in input order. A process that fails (its engine cannot be built, an
unexpected error) reports its cases as failed with the reason and still joins the
merge, so the others finish and the table says what happened; it then exits non-zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from napari_acs.cli_support import CLIError
from napari_acs.inference.batch import VOLUMES_CSV, CaseResult, expand_inputs, segment_cases, volumes_table
from napari_acs.inference.engine import Segmenter
from napari_acs.io.files import atomic_write_text
from napari_acs.progress import CancelSignal, ProgressCallback


def rank_and_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them, else ``(0, 1)``."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def segment_sharded(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    build_engine: Callable[[], Segmenter],
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    uncertainty: bool = False,
    probabilities: bool = False,
    run_info: dict | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
) -> tuple[list[CaseResult], str | None]:
    """This process's share of the cohort; returns (the merged results on rank 0, this
    process's own on the others; this process's failure or ``None``). ``uncertainty`` and
    ``probabilities`` as in :func:`~napari_acs.inference.batch.segment_cases` (the merged
    table then has the ``score`` column)."""
    rank, world = rank_and_world()
    table = Path(out_dir) / VOLUMES_CSV
    if table.exists() and not (overwrite or skip_existing):
        raise FileExistsError(f"{table} exists; pass --overwrite to replace it, or --skip-existing to go on")
    partial = f"volumes.rank{rank}.csv"
    if (Path(out_dir) / partial).exists():  # left by a killed run: rows of cases redone now
        (Path(out_dir) / partial).unlink()
    failure = None
    try:
        results = segment_cases(inputs, out_dir, build_engine(), overwrite=overwrite, skip_existing=skip_existing,
                                uncertainty=uncertainty, probabilities=probabilities, run_info=run_info,
                                progress=progress, cancel=cancel, shard=(rank, world), table_name=partial)
    except Exception as exc:  # noqa: BLE001  (reported in the merged table; the other processes finish)
        if world == 1:
            raise
        reason = str(exc) if isinstance(exc, CLIError) else f"{type(exc).__name__}: {exc}"
        failure = f"process {rank} of {world} failed: {reason}"
        results = [CaseResult(source=path, error=failure) for path in expand_inputs(inputs)[rank::world]]
    if world == 1:
        _finish(out_dir, [results], [partial], score=uncertainty)
        return results, failure
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, [asdict(r) for r in results])
        if rank == 0:
            shares = [[CaseResult(**row) for row in share] for share in gathered]
            results = _finish(out_dir, shares, [f"volumes.rank{r}.csv" for r in range(world)], score=uncertainty)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return results, failure


def _finish(out_dir: str | os.PathLike, shares: list[list[CaseResult]], partials: list[str], *,
            score: bool = False) -> list[CaseResult]:
    """Merge the shares in input order (share r holds cases r, r + world, ...) into ``volumes.csv``
    (with a ``score`` column if asked)."""
    world = len(shares)
    merged = [shares[i % world][i // world] for i in range(sum(map(len, shares)))]
    atomic_write_text(Path(out_dir) / VOLUMES_CSV, volumes_table(merged, score=score), overwrite=True)
    for name in partials:
        (Path(out_dir) / name).unlink(missing_ok=True)
    return merged
