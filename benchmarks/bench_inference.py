"""Full BraTS-size case, files in -> segmentation written: ACS vs native 3D, and our window vs MONAI's.

Each measurement runs in a fresh process (so peak RSS is per configuration),
interleaved ACS / 3D, ``--repeats`` times; the table reports medians and ratios
from this one run. Random weights (``pretrained=False``): speed does not depend on them.

    python benchmarks/bench_inference.py [--model tf_efficientnet_lite0] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile

from napari_acs.models.cpu_info import describe_cpu

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads({threads})
from napari_acs.inference import segment
from napari_acs.io import default_seg_name, load_case, save_segmentation
from napari_acs.io.sample import sample_case_path
from napari_acs.models import create_model
model = create_model({model!r}, conv={conv!r}, pretrained=False)
start = time.perf_counter()
case = load_case(sample_case_path())
t_load = time.perf_counter()
labels = segment(case, model, device="cpu", **{kwargs})
t_seg = time.perf_counter()
save_segmentation(labels, case, {out!r} + "/" + default_seg_name(case), overwrite=True)
end = time.perf_counter()
print(json.dumps(dict(total=end - start, load=t_load - start, segment=t_seg - t_load,
                      rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""

CONFIGS = {
    "ACS, auto window": ("acs", {}),
    "3D, auto window": ("3d", {}),
    "ACS, MONAI 128^3 overlap 0.5": ("acs", {"roi_size": (128, 128, 128), "overlap": 0.5}),
}


def run(model: str, conv: str, kwargs: dict, threads: int, out: str) -> dict:
    code = CHILD.format(threads=threads, model=model, conv=conv, kwargs=kwargs, out=out)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            for name, (conv, kwargs) in CONFIGS.items():
                results[name].append(run(args.model, conv, kwargs, args.threads, out))
                print(name, results[name][-1], file=sys.stderr)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    base = med["3D, auto window"]["segment"]
    print(f"### Full case, `{args.model}`, CPU {args.threads} threads\n")
    print(f"Machine: {describe_cpu()}, Python {platform.python_version()}. "
          f"Command: `python benchmarks/bench_inference.py --model {args.model} --threads {args.threads} "
          f"--repeats {args.repeats}` (medians of {args.repeats}, fresh process each).\n")
    print("| configuration | files in -> seg written (s) | segment (s) | segment / 3D | peak RSS (GB) |")
    print("|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m['total']:.1f} | {m['segment']:.1f} | {m['segment'] / base:.2f} | {m['rss_mb'] / 1024:.2f} |")
    ours, monai = med["ACS, auto window"]["segment"], med["ACS, MONAI 128^3 overlap 0.5"]["segment"]
    print(f"\nOur whole-brain window / MONAI 128^3 sliding window (same ACS model): {ours / monai:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
