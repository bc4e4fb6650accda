"""Model-level comparison of the ACS and native-3D twins.

1. Parameters of each preset's full segmentation model, ACS / 3D.
2. Encoder forward and whole U-Net forward on 1x4x128^3 (CPU, inference mode,
   channels-last-3d as the inference engine runs it): time and peak RSS, ACS
   vs 3D, each twin in a fresh process, interleaved, medians of ``--repeats``.

    python benchmarks/bench_models.py [--threads 2] [--repeats 3] [--models tf_efficientnet_lite0 resnet34]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys

from napari_acs.models.cpu_info import describe_cpu

CHILD = r"""
import json, resource, time, torch
torch.set_num_threads({threads})
from napari_acs.models import create_model
from napari_acs.models.memory_format import to_channels_last
model = to_channels_last(create_model({name!r}, conv={conv!r}, pretrained=False).eval())
x = torch.randn(1, 4, {size}, {size}, {size}).contiguous(memory_format=torch.channels_last_3d)
result = dict()
with torch.inference_mode():
    for part, net in (("encoder", model.encoder), ("unet", model)):
        net(x[..., :64, :64, :64])
        times = []
        for _ in range(2):
            start = time.perf_counter(); net(x); times.append(time.perf_counter() - start)
        result[part] = min(times)
        if part == "encoder":
            result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def encoder_run(name: str, conv: str, threads: int, size: int) -> dict:
    code = CHILD.format(name=name, conv=conv, threads=threads, size=size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "resnet34"])
    args = parser.parse_args()

    from napari_acs.models.table import model_table

    print("### Parameters of the full segmentation models (ACS / 3D)\n")
    rows = model_table()
    print("| preset | ACS (M) | 3D (M) | ACS / 3D |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['params ACS (M)']} | {r['params 3D (M)']} | {r['ACS/3D']} |")

    print(f"\n### Forward, 1x4x{args.size}^3 channels-last-3d, CPU {args.threads} threads\n")
    print(f"Machine: {describe_cpu()}, Python {platform.python_version()}. "
          f"Command: `python benchmarks/bench_models.py --threads {args.threads} --repeats {args.repeats}` "
          "(fresh process per run, interleaved, median; peak RSS of the whole process).\n")
    print("| preset | encoder ACS (s) | encoder 3D (s) | encoder ACS / 3D | U-Net ACS (s) | U-Net 3D (s) "
          "| U-Net ACS / 3D | encoder peak RSS ACS / 3D (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        runs: dict[str, list[dict]] = {"acs": [], "3d": []}
        for _ in range(args.repeats):
            for conv in runs:
                runs[conv].append(encoder_run(name, conv, args.threads, args.size))
        med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
        a, n = med["acs"], med["3d"]
        print(f"| {name} | {a['encoder']:.2f} | {n['encoder']:.2f} | {a['encoder'] / n['encoder']:.2f} | "
              f"{a['unet']:.2f} | {n['unet']:.2f} | {a['unet'] / n['unet']:.2f} | "
              f"{a['rss_mb'] / 1024:.2f} / {n['rss_mb'] / 1024:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
