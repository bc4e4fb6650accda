"""CUDA timings (issues 6 and 7): full case with AMP and training step with AMP, ACS vs native 3D.

One process, one GPU. Full case: files in -> segmentation written (``load_case``,
``segment(device="cuda")`` with float16 autocast, ``save_segmentation``) after two
warm-up cases, median of ``--repeats``; "segment" is the GPU part alone (crop,
z-score, network, labels). Training step: forward, Dice + BCE, backward, AdamW, with
float16 autocast and a gradient scaler, 2 x 4 x 96^3, median of ``--steps`` after
three warm-ups. Random weights: speed does not depend on them.

Variants of the ACS operator, to choose the CUDA path by measurement: ``dense``
(the shipped one: one conv3d with the zero-filled k x k x k kernel, 3x the FLOPs, one
call) and ``parts`` (one conv3d per axial/coronal/sagittal part, as on the CPU).
``--channels-last`` also times channels-last-3d inputs; training steps are timed with
``torch.backends.cudnn.benchmark`` off and on (fixed patch size: autotuning pays).

    python benchmarks/bench_cuda.py [--models tf_efficientnet_lite0 resnet34] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from napari_acs.inference import segment
from napari_acs.io import default_seg_name, load_case, save_segmentation
from napari_acs.io.sample import sample_case_path
from napari_acs.models import create_model
from napari_acs.models.acs_paths import acs_paths
from napari_acs.models.cpu_info import describe_cpu
from napari_acs.training.losses import RegionLoss
from napari_acs.training.step import train_step


def acs_variant(name: str) -> contextlib.AbstractContextManager[None]:
    """ACS layers built inside run on CUDA as ``dense`` (the shipped path) or as three ``parts``."""
    return acs_paths(cuda="dense" if name == "dense" else "parts")


class ChannelsLast(torch.nn.Module):
    """Feeds the wrapped model channels-last-3d input (cuDNN keeps the layout)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.preset = getattr(model, "preset", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last_3d))


def median_time(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_case(model: torch.nn.Module, out: str, repeats: int) -> tuple[float, float, float]:
    """(files in -> seg written, segment alone, peak GPU MiB) in seconds, medians."""
    path = sample_case_path()

    def whole() -> None:
        case = load_case(path)
        labels = segment(case, model, device="cuda")
        save_segmentation(labels, case, f"{out}/{default_seg_name(case)}", overwrite=True)

    total = median_time(whole, 2, repeats)
    case = load_case(path)
    torch.cuda.reset_peak_memory_stats()
    seg = median_time(lambda: segment(case, model, device="cuda"), 1, repeats)
    return total, seg, torch.cuda.max_memory_allocated() / 2**20


def training_step(model: torch.nn.Module, batch: int, size: int, steps: int) -> tuple[float, float]:
    """(seconds per AMP training step, peak GPU MiB)."""
    model.cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = RegionLoss()
    x = torch.randn(batch, 4, size, size, size, device="cuda")
    y = (torch.rand(batch, 3, size, size, size, device="cuda") > 0.9).float()

    def step() -> None:
        train_step(model, x, y, loss_fn, optimizer, scaler, amp=True)

    torch.cuda.reset_peak_memory_stats()
    seconds = median_time(step, 3, steps)
    return seconds, torch.cuda.max_memory_allocated() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "resnet34"])
    parser.add_argument("--variants", nargs="+", default=["dense", "parts"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    rows = []
    layouts = [False, True] if args.channels_last else [False]
    with tempfile.TemporaryDirectory() as out:
        for name in args.models:
            for conv in ("acs", "3d"):
                for variant in args.variants if conv == "acs" else ["-"]:
                    for cl in layouts:
                        with acs_variant(variant if conv == "acs" else "dense"):
                            torch.manual_seed(0)
                            model = create_model(name, conv=conv, pretrained=False).cuda()
                            net = ChannelsLast(model) if cl else model
                            torch.backends.cudnn.benchmark = False
                            total, seg, seg_mib = full_case(net, out, args.repeats)
                            steps = []
                            for autotune in (False, True):
                                torch.backends.cudnn.benchmark = autotune
                                steps.append(training_step(net, 2, 96, args.steps) if not args.skip_training
                                             else (float("nan"),) * 2)
                        row = (name, conv, variant, "CL" if cl else "NCDHW", total, seg, seg_mib, *steps[0], steps[1][0])
                        rows.append(row)
                        print(row, flush=True)
                        del model, net
                        torch.cuda.empty_cache()
    print(f"\n### CUDA, {torch.cuda.get_device_name()}, torch {torch.__version__}, AMP float16\n\n{describe_cpu()}\n")
    print("| model | conv | ACS operator | layout | case: files in -> seg written (s) | segment (s) "
          "| segment peak (MiB) | train step 2x4x96^3 (s) | train peak (MiB) | train step, cudnn.benchmark (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, conv, variant, layout, total, seg, seg_mib, step, step_mib, tuned in rows:
        print(f"| {name} | {conv} | {variant} | {layout} | {total:.3f} | {seg:.3f} | {seg_mib:.0f} "
              f"| {step:.3f} | {step_mib:.0f} | {tuned:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
