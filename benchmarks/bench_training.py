"""Seconds per training step and peak memory, ACS vs native 3D, same preset (issue 7).

One step = forward, Dice + BCE region loss, backward, AdamW update, as in
``napari_acs.training`` (random data and weights: speed does not depend on them).
Each twin runs in a fresh process, interleaved, ``--repeats`` times; each run times
``--steps`` steps after two warm-up steps and reports the median step. The processes keep
freed memory for reuse as the training command line does (``--allocator default``: glibc's
defaults; "peak memory" above the start is then near 0 on the CPU, since the warm-up steps
already hold a step's memory: compare the process's peak RSS). The processes run
with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set: idle OpenMP threads sleep instead of
spinning, so a core taken by another process cannot stall every parallel region (on a
shared 2-core machine, spinning threads made single steps 5x slower).

    python benchmarks/bench_training.py [--model tf_efficientnet_lite0] [--batch 2] [--size 96] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

from napari_acs.models.cpu_info import describe_cpu

CHILD = r"""
import json, resource, statistics, time, torch
torch.set_num_threads({threads})
from napari_acs.cli_support import keep_freed_memory_for_reuse
if {reuse}:
    keep_freed_memory_for_reuse()  # as the training command line does
from napari_acs.models import create_model
from napari_acs.models.acs_paths import configure_acs
from napari_acs.training.losses import RegionLoss
from napari_acs.training.measure import PeakMemory
from napari_acs.training.step import train_step
device = torch.device({device!r})
torch.manual_seed(0)
model = create_model({model!r}, conv={conv!r}, pretrained=False).to(device).train()
configure_acs(model, device, training=True, measure={measure},  # rules: as the training loop does
              input_shape=({batch}, 4, {size}, {size}, {size}))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = RegionLoss()
scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
x = torch.randn({batch}, 4, {size}, {size}, {size}, device=device)
y = (torch.rand({batch}, 3, {size}, {size}, {size}, device=device) > 0.9).float()

def step():
    train_step(model, x, y, loss_fn, optimizer, scaler, amp=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()

step(); step()
memory = PeakMemory(device)
memory.start()
times, cpu = [], []
for _ in range({steps}):
    start, start_cpu = time.perf_counter(), time.process_time()
    step()
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps(dict(seconds=statistics.median(times), cpu_seconds=statistics.median(cpu),
                      peak_mib=memory.peak_mib(),
                      peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def run(args: argparse.Namespace, conv: str, measure: bool) -> dict:
    code = CHILD.format(reuse=args.allocator == "reuse", threads=args.threads, device=args.device, model=args.model, conv=conv,
                        batch=args.batch, size=args.size, steps=args.steps,
                        measure=measure and args.device == "cpu")
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paths", choices=("rules", "measured", "both"), default="rules",
                        help="CPU ACS operator paths: the rule table (as the training loop), measured at "
                        "the run's shape (acs_measure, cached), or both arms in one run (default rules)")
    parser.add_argument("--allocator", choices=("reuse", "default"), default="reuse",
                        help="glibc keeping freed memory for reuse, as the training command line sets it "
                        "(default), or glibc's defaults")
    args = parser.parse_args()
    arms = {"measured": ("acs", True), "rules": ("acs", False)}
    arms = {("acs" if args.paths != "both" else f"acs {k}"): v for k, v in arms.items() if args.paths in (k, "both")}
    arms["3d"] = ("3d", False)
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        for arm, (conv, measure) in arms.items():
            runs[arm].append(run(args, conv, measure))
            print(arm, runs[arm][-1], file=sys.stderr)
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
    n = med["3d"]
    print(f"### Training step, `{args.model}`, {args.batch}x4x{args.size}^3, {args.device}"
          + (f" {args.threads} threads" if args.device == "cpu" else " (AMP)") + "\n")
    print(f"Machine: {describe_cpu()}, Python {platform.python_version()}. Command: `python "
          f"benchmarks/bench_training.py --model {args.model} --batch {args.batch} --size {args.size} "
          f"--steps {args.steps} --repeats {args.repeats} --threads {args.threads} --device {args.device} "
          f"--paths {args.paths} --allocator {args.allocator}` "
          "(fresh process per twin, interleaved; median step of each run, median over runs; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}).\n")
    print("| twin | s / step | process CPU s / step | peak memory (MiB) | peak RSS of the process (MiB) |\n"
          "|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name.replace('acs', 'ACS').replace('3d', '3D')} | {m['seconds']:.2f} | {m['cpu_seconds']:.2f} | "
              f"{m['peak_mib']:.0f} | {m['peak_rss_mib']:.0f} |")
    for name, a in med.items():
        if name != "3d":
            print(f"\n{name.replace('acs', 'ACS')} / 3D step time: {a['seconds'] / n['seconds']:.2f} "
                  f"(CPU time {a['cpu_seconds'] / n['cpu_seconds']:.2f}); peak memory: {a['peak_mib'] / n['peak_mib']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
