"""CUDA timings (issues 6 and 7): full case with AMP and training step with AMP, ACS vs native 3D.

One process, one GPU. Full case: files in -> segmentation written (``load_case``,
``segment(device="cuda")`` with float16 autocast, ``save_segmentation``) after two
warm-up cases, median of ``--repeats``; "segment" is the GPU part alone (crop,
z-score, network, labels). Training step: forward, Dice + BCE, backward, AdamW, with
float16 autocast and a gradient scaler, 2 x 4 x 96^3, median of ``--steps`` after
three warm-ups. Random weights: speed does not depend on them.

Variants of the ACS operator, to choose the CUDA path by measurement:
``parts`` (the default: one conv3d per axial/coronal/sagittal part) and ``dense``
(one conv3d with the zero-filled k x k x k kernel, 3x the FLOPs, one call).
``--channels-last`` also times channels-last-3d inputs.

    python benchmarks/bench_cuda.py [--models tf_efficientnet_lite0 resnet34] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from napari_acs.inference import segment
from napari_acs.io import default_seg_name, load_case, save_segmentation
from napari_acs.io.sample import sample_case_path
from napari_acs.models import acs_conv, create_model
from napari_acs.training.losses import RegionLoss


@contextlib.contextmanager
def acs_variant(name: str) -> Iterator[None]:
    """Run the ACS layers with operator variant ``name`` (``parts`` is the shipped one)."""
    original = acs_conv.acs_conv3d
    if name == "parts":
        yield
        return

    def dense(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, split=None, padding_mode="zeros"):
        k = weight.shape[-1]
        if k == 1:
            return original(x, weight, bias, stride, padding, dilation, groups, split, padding_mode)
        pads = [acs_conv._axis_padding(n, k, stride, dilation, padding) for n in x.shape[2:]]
        x = F.pad(x, acs_conv.pad_arg(pads))
        return F.conv3d(x, acs_conv.acs_kernel_3d(weight, split), bias, stride, 0, dilation, groups)

    acs_conv.acs_conv3d = dense
    try:
        yield
    finally:
        acs_conv.acs_conv3d = original


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
        with torch.autocast("cuda", dtype=torch.float16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    torch.cuda.reset_peak_memory_stats()
    seconds = median_time(step, 3, steps)
    return seconds, torch.cuda.max_memory_allocated() / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "resnet34"])
    parser.add_argument("--variants", nargs="+", default=["parts", "dense"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = False
    rows = []
    layouts = [False, True] if args.channels_last else [False]
    with tempfile.TemporaryDirectory() as out:
        for name in args.models:
            for conv in ("acs", "3d"):
                for variant in args.variants if conv == "acs" else ["-"]:
                    for cl in layouts:
                        with acs_variant(variant if conv == "acs" else "parts"):
                            torch.manual_seed(0)
                            model = create_model(name, conv=conv, pretrained=False).cuda()
                            net = ChannelsLast(model) if cl else model
                            total, seg, seg_mib = full_case(net, out, args.repeats)
                            step, step_mib = (float("nan"),) * 2
                            if not args.skip_training:
                                step, step_mib = training_step(net, 2, 96, args.steps)
                        row = (name, conv, variant, "CL" if cl else "NCDHW", total, seg, seg_mib, step, step_mib)
                        rows.append(row)
                        print(row, flush=True)
                        del model, net
                        torch.cuda.empty_cache()
    print(f"\n### CUDA, {torch.cuda.get_device_name()}, torch {torch.__version__}, AMP float16\n")
    print("| model | conv | ACS operator | layout | case: files in -> seg written (s) | segment (s) "
          "| segment peak (MiB) | train step 2x4x96^3 (s) | train peak (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, conv, variant, layout, total, seg, seg_mib, step, step_mib in rows:
        print(f"| {name} | {conv} | {variant} | {layout} | {total:.3f} | {seg:.3f} | {seg_mib:.0f} "
              f"| {step:.3f} | {step_mib:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
