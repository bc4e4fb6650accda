"""Benchmark ``napari_acs.io.load_case`` on a BraTS-size gzip case: wall time and peak RSS.

Writes a synthetic 4 x 240 x 240 x 155 int16 case (+ uint8 seg) with BraTS naming and
LPS storage, then loads it in fresh subprocesses pinned to 2 cores, interleaving the
variants, 3 repeats each: ``load_case`` with 1 thread, 5 (one per file) and the
default (one per file, at most one per CPU), and, for reference, the naive nibabel
route (``as_closest_canonical`` + ``get_fdata()`` float64 per file). Goals: <= 2 s and <= 1.5 GB peak RSS.

    python benchmarks/bench_load_case.py [--repeats 3] [--out benchmarks/RESULTS_load_case.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_acs.models.cpu_info import cpu_flags, cpu_model

SHAPE = (240, 240, 155)
VARIANTS = (
    "load_case threads=1",
    "load_case threads=5 (one per file)",
    "load_case (default threads)",
    "naive nibabel float64",
)
GOAL_SECONDS, GOAL_RSS_MB = 2.0, 1536.0


def make_case(folder: Path, seed: int = 0) -> None:
    """A brain-like case: ellipsoid head, smooth tissue contrast, noise; background 0."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    head = ((x - 120) / 70.0) ** 2 + ((y - 125) / 88.0) ** 2 + ((z - 70) / 62.0) ** 2
    inside = head <= 1.0
    tumour = ((x - 150) / 18.0) ** 2 + ((y - 100) / 22.0) ** 2 + ((z - 80) / 16.0) ** 2 <= 1.0
    tissue = np.cos(x / 9.0) * np.sin(y / 11.0) + np.cos(z / 7.0)  # folds-like low-frequency pattern
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = (0.0, 239.0, 0.0)
    for channel, name in enumerate(("t1", "t1ce", "t2", "flair")):
        volume = (400 + 150 * channel) * (1.0 + 0.25 * tissue) + rng.normal(0.0, 30.0, SHAPE)
        volume[tumour] *= 1.5
        data = np.where(inside, volume, 0).astype(np.int16)
        nib.save(nib.Nifti1Image(data, affine), folder / f"BraTS2021_00000_{name}.nii.gz")
    seg = np.where(tumour, 2, 0).astype(np.uint8)
    seg[tumour & (head < 0.1)] = 4
    nib.save(nib.Nifti1Image(seg, affine), folder / "BraTS2021_00000_seg.nii.gz")


def run_variant(variant: str, folder: Path) -> dict:
    """In this (fresh) process: load once, report seconds and peak RSS (MB)."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    from napari_acs.io import load_case

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if variant == VARIANTS[3]:
        files = sorted(folder.glob("*.nii.gz"))
        arrays = [nib.as_closest_canonical(nib.load(f)).get_fdata() for f in files]
        shape = np.stack(arrays[:4]).shape
    else:
        threads = {VARIANTS[0]: 1, VARIANTS[1]: 5, VARIANTS[2]: None}[variant]
        shape = load_case(folder, threads=threads).image.shape
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_rss_mb": peak, "baseline_rss_mb": baseline, "shape": list(shape)}


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu_model()} ({' '.join(cpu_flags())}), {min(cores, 2)} of {cores} cores used, "
        f"Python {platform.python_version()}, numpy {np.__version__}, nibabel {nib.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median reported)")
    default_out = Path(__file__).with_name("RESULTS_load_case.md")
    parser.add_argument("--out", type=Path, default=default_out, help="markdown file to write")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--make", type=Path, metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_variant(args.worker[0], Path(args.worker[1]))))
        return
    if args.make:
        make_case(args.make)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # in its own process: Linux carries a parent's peak RSS into children across fork + exec
        subprocess.run([sys.executable, __file__, "--make", str(folder)], check=True)
        size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):  # interleaved, so machine load hits every variant alike
            for variant in VARIANTS:
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", variant, str(folder)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))

    lines = [
        "# load_case benchmark",
        "",
        f"Case: 4 x {' x '.join(map(str, SHAPE))} int16 + uint8 seg, gzip-compressed ({size_mb:.1f} MB on disk), "
        "BraTS 2021 names, LPS storage.",
        f"Machine: {machine()}.",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}` (each run in a fresh process; "
        f"median of {args.repeats} interleaved runs; peak RSS is the whole process, max over runs).",
        "",
        "| variant | time (s, median) | peak RSS (MB) | of which before loading (MB) | goal |",
        "|---|---|---|---|---|",
    ]
    for variant, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = max(r["peak_rss_mb"] for r in results)
        baseline = statistics.median(r["baseline_rss_mb"] for r in results)
        met = seconds <= GOAL_SECONDS and peak <= GOAL_RSS_MB
        goal = "" if variant == VARIANTS[3] else ("met" if met else "MISSED")
        lines.append(f"| {variant} | {seconds:.2f} | {peak:.0f} | {baseline:.0f} | {goal} |")
    lines += ["", f"Goals: <= {GOAL_SECONDS:g} s and <= {GOAL_RSS_MB:.0f} MB peak RSS on 2 cores."]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
