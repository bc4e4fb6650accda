"""A cohort through one ``segment`` command: time per case after the first, peak memory (issue 16).

Makes ``--cases`` full-size synthetic cases once (in ``--work``), then times whole
commands ``python -m napari_acs.inference CASES... --out DIR`` (the flags of
``napari-acs segment``; demo model, CPU) in fresh processes for 1, 2 and all cases,
alternating with the code of ``--baseline`` (a checkout of an earlier commit, run from
the same environment with ``PYTHONPATH``) when given, so both are measured in one run.

    python benchmarks/bench_cohort.py --cases 8 --repeats 2 [--baseline /tmp/old-checkout]

Prints wall seconds, (t_all - t_1) / (cases - 1) per case after the first, and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from napari_acs.models.cpu_info import describe_cpu


def run(cases: list[Path], out: Path, tree: Path | None, threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one segment command in a fresh process."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    module = "napari_acs.inference" if tree is None or (tree / "napari_acs/inference/__main__.py").is_file() \
        else "napari_acs.cli"
    args = [sys.executable, "-m", module, *(["segment"] if module == "napari_acs.cli" else []),
            *map(str, cases), "--out", str(out), "--device", "cpu", "--no-progress"]
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    seconds, rss_kib, rc = done.stdout.split()
    if rc != "0":
        raise RuntimeError(f"segment failed ({rc}): {done.stderr[-2000:]}")
    return float(seconds), int(rss_kib) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=8, help="cases in the largest run (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size (default 2; medians shown)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--work", default="/tmp/napari_acs_bench_cohort", help="folder for the cases and outputs")
    parser.add_argument("--baseline", type=Path, help="checkout of an earlier commit to compare with")
    args = parser.parse_args()

    from napari_acs.synthetic import make_cohort

    work = Path(args.work)
    cohort = work / "cohort"
    if len(list(cohort.glob("BraTS*"))) < args.cases:
        make_cohort(cohort, args.cases, seed=3, overwrite=True)
    cases = sorted(cohort.glob("BraTS*"))[: args.cases]
    arms = {"this code": None, **({"baseline": args.baseline} if args.baseline else {})}
    sizes = sorted({1, 2, args.cases})
    seen: dict = {(arm, n): [] for arm in arms for n in sizes}
    for _ in range(args.repeats):
        for n in sizes:
            for arm, tree in arms.items():
                seen[arm, n].append(run(cases[:n], work / "out", tree, args.threads))
    print(f"CPU: {describe_cpu()}; {args.threads} threads; {time.strftime('%Y-%m-%d')}")
    print("| code | cases | wall (s) | per case after the first (s) | peak RSS (GB) |")
    print("|---|---|---|---|---|")
    for arm in arms:
        first = statistics.median(t for t, _ in seen[arm, 1])
        for n in sizes:
            wall = statistics.median(t for t, _ in seen[arm, n])
            rss = max(r for _, r in seen[arm, n])
            after = "-" if n == 1 else f"{(wall - first) / (n - 1):.2f}"
            print(f"| {arm} | {n} | {wall:.1f} | {after} | {rss:.2f} |")


if __name__ == "__main__":
    main()
