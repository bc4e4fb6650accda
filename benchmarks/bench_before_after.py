"""This code against an earlier checkout on the sample case: the whole ``segment`` command and ``segment`` alone.

Both arms run from the same environment (the baseline with ``PYTHONPATH`` pointing at
its checkout), alternating, each measurement in a fresh process, so drift of this
shared machine hits both arms alike; the table gives medians and the ratio of medians,
and the median of the pairwise ratios.

- whole command: ``python -m napari_acs segment SAMPLE --out DIR --device cpu`` (demo
  model; process start-up, imports, loading, segmenting, writing), wall seconds;
- segment alone: inside one process, the demo model and the case loaded first, then
  ``napari_acs.inference.segment(case, model, device="cpu")`` timed (everything the
  call does: engine preparation and the forward), wall and CPU seconds.

    python benchmarks/bench_before_after.py --baseline /tmp/oldtree [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from napari_acs.models.cpu_info import describe_cpu

SEGMENT_ALONE = r"""
import json, time, torch
from napari_acs.inference import segment
from napari_acs.io import load_case
from napari_acs.io.sample import sample_case_path
from napari_acs.models.checkpoint import load_model
from napari_acs.models.select import demo_checkpoint_path
model = load_model(demo_checkpoint_path())
case = load_case(sample_case_path())
wall, cpu = time.perf_counter(), time.process_time()
labels = segment(case, model, device="cpu")
print(json.dumps(dict(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu,
                      tumour=int((labels > 0).sum()))))
"""


def _env(tree: Path | None, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def whole_command(tree: Path | None, threads: int, out: Path) -> float:
    """Wall seconds of one ``napari-acs segment`` command on the sample case."""
    from napari_acs.io.sample import sample_case_path

    args = [sys.executable, "-m", "napari_acs", "segment", str(sample_case_path()), "--out", str(out),
            "--device", "cpu", "--overwrite", "--no-progress"]
    start = time.perf_counter()
    subprocess.run(args, env=_env(tree, threads), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def segment_alone(tree: Path | None, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", SEGMENT_ALONE], env=_env(tree, threads),
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, new: list[float], old: list[float]) -> str:
    ratios = [a / b for a, b in zip(new, old)]
    return (f"| {name} | {statistics.median(new):.2f} | {statistics.median(old):.2f} | "
            f"{statistics.median(new) / statistics.median(old):.3f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the earlier commit")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of each measurement (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = parser.parse_args()

    arms = {"this code": None, "baseline": args.baseline.resolve()}
    seen: dict = {(arm, what): [] for arm in arms for what in ("command", "wall", "cpu")}
    tumour: dict = {}
    with tempfile.TemporaryDirectory() as out:
        for arm, tree in arms.items():  # warm-up: file caches, byte-code
            whole_command(tree, args.threads, Path(out))
        for index in range(args.repeats):
            order = list(arms.items()) if index % 2 == 0 else list(arms.items())[::-1]
            for arm, tree in order:
                seen[arm, "command"].append(whole_command(tree, args.threads, Path(out)))
            for arm, tree in order:
                result = segment_alone(tree, args.threads)
                seen[arm, "wall"].append(result["wall"])
                seen[arm, "cpu"].append(result["cpu"])
                tumour[arm] = result["tumour"]
    print(f"CPU: {describe_cpu()}; {args.threads} threads; {args.repeats} pairs; {time.strftime('%Y-%m-%d')}; "
          f"tumour voxels this code {tumour['this code']}, baseline {tumour['baseline']}")
    print("| measurement | this code (s) | baseline (s) | ratio of medians | median pair ratio (range) |")
    print("|---|---|---|---|---|")
    for what, name in (("command", "whole segment command, wall"), ("wall", "segment alone, wall"),
                       ("cpu", "segment alone, CPU")):
        print(_row(name, seen["this code", what], seen["baseline", what]))


if __name__ == "__main__":
    main()
