"""Time per BraTS-size case (240 x 240 x 155) of the lesion-wise and the legacy metrics.

Cases: the sample references (``napari_acs/sample_data``) against predictions made from
them (shifted 2 and 1 voxels, five false-positive blobs, optionally 100 scattered
false-positive voxels, which stretch the masks' bounding box to the whole volume), and a
metastasis-like case with 40 small lesions. Each variant runs ``--repeats`` times in this
process after one warm-up call (the first call imports MONAI for the surfel-area table;
its time is printed apart); medians are reported. Goal (issue 18): lesion-wise metrics,
all three regions, under 2 s per case on 2 cores.

    python benchmarks/bench_metrics.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_acs.metrics import brats_metrics, lesionwise_metrics
from napari_acs.metrics.brats import EMPTY_HD95
from napari_acs.metrics.lesionwise import region_masks

SAMPLES = Path(__file__).resolve().parents[1] / "napari_acs" / "sample_data"
GOAL_S = 2.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def perturbed(ref: np.ndarray, rng: np.random.Generator, speckles: int) -> np.ndarray:
    """A prediction: the reference shifted, five 4x4x3 ED blobs, ``speckles`` ET voxels."""
    pred = np.roll(ref, (2, 1, 0), axis=(0, 1, 2)).copy()
    for _ in range(5):
        x, y, z = rng.integers(20, 140, 3)
        pred[x:x + 4, y:y + 4, z:z + 3] = 2
    pred[tuple(rng.integers(0, 155, (3, speckles)))] = 4
    return pred


def metastases(rng: np.random.Generator, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """40 small ED/ET balls (radius 2-5 voxels) and a prediction that finds most of them."""
    ref = np.zeros((240, 240, 155), np.int16)
    grid = np.indices((11, 11, 11)) - 5
    for _ in range(n):
        centre, radius = rng.integers(15, 140, 3), rng.uniform(2, 5)
        inside = (grid**2).sum(0) <= radius**2
        sub = ref[tuple(slice(c - 5, c + 6) for c in centre)]
        sub[inside] = 2
        sub[(grid**2).sum(0) <= (radius / 2) ** 2] = 4
    pred = np.roll(ref, (1, 0, 1), axis=(0, 1, 2)) * (rng.random(ref.shape) < 0.999)
    return pred.astype(np.int16), ref


def legacy_hd95_before(pred: np.ndarray, ref: np.ndarray) -> float:
    """The legacy HD95 before the k-d tree: distance transforms on the masks' union box."""
    if not pred.any() or not ref.any():
        return 0.0 if not pred.any() and not ref.any() else EMPTY_HD95
    box = ndimage.find_objects((pred | ref).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    p, r = pred[box], ref[box]
    sp, sr = p & ~ndimage.binary_erosion(p, border_value=0), r & ~ndimage.binary_erosion(r, border_value=0)
    return float(max(np.percentile(ndimage.distance_transform_edt(~sr)[sp], 95),
                     np.percentile(ndimage.distance_transform_edt(~sp)[sr], 95)))


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant (default 5)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = {}
    for case_id in ("BraTS2021_00000", "BraTS2021_00001"):
        ref = np.asarray(nib.load(SAMPLES / case_id / f"{case_id}_seg.nii.gz").dataobj).astype(np.int16)
        cases[f"{case_id}, shifted + 5 blobs"] = (perturbed(ref, rng, 0), ref)
        cases[f"{case_id}, + 100 scattered voxels"] = (perturbed(ref, rng, 100), ref)
    cases["40 metastases, 0.1 % voxels dropped"] = metastases(rng)

    first_pred, first_ref = next(iter(cases.values()))
    start = time.perf_counter()
    lesionwise_metrics(first_pred, first_ref)
    print(f"first call (imports MONAI's surfel table): {time.perf_counter() - start:.2f} s")
    print(f"CPU: {cpu_model()}; median of {args.repeats}; seconds per case, all three regions\n")
    print("| case | lesion-wise GLI | lesion-wise MET | legacy | legacy HD95 before | both (brats_metrics) |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for name, (pred, ref) in cases.items():
        pred_regions, ref_regions = region_masks(pred, ref, "brats2021")
        row = [timed(lambda: lesionwise_metrics(pred, ref, challenge="GLI"), args.repeats),
               timed(lambda: lesionwise_metrics(pred, ref, challenge="MET"), args.repeats),
               timed(lambda: brats_metrics(pred, ref, challenge=None), args.repeats),
               timed(lambda: [legacy_hd95_before(p, r) for p, r in zip(pred_regions, ref_regions)], args.repeats),
               timed(lambda: brats_metrics(pred, ref), args.repeats)]
        worst = max(worst, row[0])
        print(f"| {name} | " + " | ".join(f"{t:.2f}" for t in row) + " |")
    print(f"\nslowest lesion-wise GLI case {worst:.2f} s: goal < {GOAL_S:.0f} s {'met' if worst < GOAL_S else 'MISSED'}")


if __name__ == "__main__":
    main()
