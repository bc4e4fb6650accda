"""Benchmark: ACS convolution implementations against acsconv's ACSConv and the conv2d floor.

For each layer shape it times, interleaved and repeated (median and fastest of the runs):
  acsconv   acsconv.operators.ACSConv (three conv3d calls, then cat)
  split3    three F.conv3d calls with the anisotropic kernels, then torch.cat
  slices2d  conv2d over slices: each third permuted/reshaped to (N*D, C, H, W)
  dense     one F.conv3d with the zero-padded k x k x k kernel (the reference)
  ours      napari_acs.models.ACSConv3d (the path its build-time rules choose: acs_paths)
  floor     one conv2d with the same FLOPs over all slices, input already (N*D, C, H, W)
in both memory formats (contiguous NCDHW and channels_last_3d), forward only and
forward + backward. Prints a Markdown table (ratios ours/acsconv and ours/floor).

    python benchmarks/bench_acs_operator.py [--threads 2] [--repeats 7] [--out FILE] [--quick]
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning, so process CPU time counts work only:
# on a shared machine CPU time is far steadier than wall time (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from acsconv.operators import ACSConv  # noqa: E402

from napari_acs.models.acs_conv import ACSConv3d, acs_conv3d, acs_kernel_3d, acs_split  # noqa: E402
from napari_acs.models.cpu_info import describe_cpu  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """One layer: input (1, c_in, size^3), square kernel, groups."""

    name: str
    c_in: int
    c_out: int
    size: int
    k: int = 3
    stride: int = 1
    groups: int = 1


SHAPES = [
    Shape("3x3 64->64, 64^3 (headline)", 64, 64, 64),
    Shape("3x3 64->64 stride 2, 64^3", 64, 64, 64, stride=2),
    Shape("3x3 32->32, 96^3", 32, 32, 96),
    Shape("3x3 128->128, 32^3", 128, 128, 32),
    Shape("3x3 4->32 stride 2 (stem), 128^3", 4, 32, 128, stride=2),
    Shape("3x3 depthwise 96, 48^3", 96, 96, 48, groups=96),
    Shape("3x3 depthwise 144 stride 2, 48^3", 144, 144, 48, stride=2, groups=144),
    Shape("5x5 depthwise 240, 24^3", 240, 240, 24, k=5, groups=240),
]
QUICK = [SHAPES[0], SHAPES[5]]


def _split3(x: torch.Tensor, w: torch.Tensor, s: Shape) -> torch.Tensor:
    p, parts, start = s.k // 2, [], 0
    for axis, n in enumerate(acs_split(s.c_out)):
        pad = [p, p, p]
        pad[axis] = 0
        xin = x if s.groups == 1 else x[:, start : start + n]
        g = 1 if s.groups == 1 else n
        parts.append(F.conv3d(xin, w[start : start + n].unsqueeze(2 + axis), None, s.stride, pad, 1, g))
        start += n
    return torch.cat(parts, 1)


def _slices2d(x: torch.Tensor, w: torch.Tensor, s: Shape) -> torch.Tensor:
    """Each third as conv2d over the slices along its collapsed axis (stride applied by slicing)."""
    n_batch, p, parts, start = x.shape[0], s.k // 2, [], 0
    for axis, n in enumerate(acs_split(s.c_out)):
        xin = x if s.groups == 1 else x[:, start : start + n]
        xin = xin[(slice(None),) * (2 + axis) + (slice(None, None, s.stride),)]  # centre plane, odd k
        perm = [0, 2 + axis, 1] + [2 + a for a in range(3) if a != axis]
        moved = xin.permute(perm)
        depth = moved.shape[1]
        y = F.conv2d(moved.reshape(n_batch * depth, *moved.shape[2:]), w[start : start + n], None, s.stride, p, 1,
                     1 if s.groups == 1 else n)
        y = y.reshape(n_batch, depth, *y.shape[1:])
        parts.append(y.permute([perm.index(i) for i in range(5)]))
        start += n
    return torch.cat(parts, 1)


def _variants(s: Shape, fmt: torch.memory_format, backward: bool) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    x = torch.randn(1, s.c_in, s.size, s.size, s.size).contiguous(memory_format=fmt)
    ours = ACSConv3d(s.c_in, s.c_out, s.k, s.stride, s.k // 2, groups=s.groups, bias=False)
    w = ours.weight
    ref = ACSConv(s.c_in, s.c_out, s.k, s.stride, s.k // 2, groups=s.groups, bias=False)
    ref.weight = w
    dense = acs_kernel_3d(w.detach()).requires_grad_(backward)
    out_size = (s.size + 2 * (s.k // 2) - s.k) // s.stride + 1
    fmt2d = torch.channels_last if fmt == torch.channels_last_3d else torch.contiguous_format
    # floor: the MACs of the ACS layer as one conv2d over its out_size output slices
    x2d = torch.randn(out_size, s.c_in, s.size, s.size).contiguous(memory_format=fmt2d)
    if backward:
        x.requires_grad_(True)
        x2d.requires_grad_(True)
    run = {
        "acsconv": lambda: ref(x),
        "split3": lambda: _split3(x, w, s),
        "slices2d": lambda: _slices2d(x, w, s),
        "dense": lambda: F.conv3d(x, dense, None, s.stride, s.k // 2, 1, s.groups),
        "ours": lambda: ours(x),
        "floor": lambda: F.conv2d(x2d, w, None, s.stride, s.k // 2, 1, s.groups),
    }
    if not backward:
        return {k: _no_grad(f) for k, f in run.items()}
    del run["dense"]  # the reference is 3x the FLOPs; its depthwise backward takes seconds
    return {k: _with_backward(f, (x, x2d, w)) for k, f in run.items()}


def _no_grad(f: Callable[[], torch.Tensor]) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return f()

    return call


def _with_backward(f: Callable[[], torch.Tensor], leaves: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    def call() -> object:
        for t in leaves:
            t.grad = None
        y = f()
        y.backward(torch.ones_like(y))
        return y

    return call


def _time(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each run of each variant; interleaved, every other
    round in reverse order, so that load from other processes hits all variants alike."""
    for f in variants.values():  # warm-up: oneDNN primitive creation
        f()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    order = list(variants.items())
    for i in range(repeats):
        for k, f in order if i % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            runs[k].append((time.perf_counter() - t0, time.process_time() - c0))
    return runs


def _stat(runs: list[tuple[float, float]], pick: Callable[[list[float]], float]) -> tuple[float, float]:
    return pick([w for w, _ in runs]), pick([c for _, c in runs])


def _check_exact(s: Shape) -> None:
    """Every variant computes the same numbers as the dense reference (float64)."""
    torch.manual_seed(1)
    x = torch.randn(1, s.c_in, 9, 10, 11, dtype=torch.float64)
    w = torch.randn(s.c_out, s.c_in // s.groups, s.k, s.k, dtype=torch.float64)
    ref = F.conv3d(x, acs_kernel_3d(w), None, s.stride, s.k // 2, 1, s.groups)
    ours = acs_conv3d(x, w, None, s.stride, s.k // 2, 1, s.groups)
    for name, y in (("split3", _split3(x, w, s)), ("slices2d", _slices2d(x, w, s)), ("ours", ours)):
        if not torch.allclose(y, ref, atol=1e-10):
            raise AssertionError(f"{name} differs from the dense reference for {s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant (default 7)")
    parser.add_argument("--quick", action="store_true", help="only the headline and one depthwise shape")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else SHAPES
    print(describe_cpu(), flush=True)
    lines = [
        "# ACS operator benchmark",
        "",
        f"`python benchmarks/bench_acs_operator.py --threads {args.threads} --repeats {args.repeats}`:"
        f" {describe_cpu()}, {args.threads} threads, batch 1, float32.",
        "Cells: median wall ms / median process CPU ms of interleaved runs (CPU time is the",
        "steady measure on a shared machine). floor = one conv2d of the same FLOPs over all",
        "output slices, input already laid out as (D, C, H, W) in the same memory format.",
        "Ratios of medians, then of the fastest runs (the least disturbed, on a shared machine).",
        "",
        "| layer | format | pass | acsconv | split3 | slices2d | dense | floor | ours "
        "| ours/acsconv wall, cpu | ours/floor wall, cpu | fastest: ours/acsconv wall, cpu |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in shapes:
        _check_exact(s)
        for fmt_name, fmt in (("NCDHW", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
            for backward in (False, True):
                runs = _time(_variants(s, fmt, backward), args.repeats)
                t = {k: _stat(r, statistics.median) for k, r in runs.items()}
                fast = {k: _stat(r, min) for k, r in runs.items()}
                cells = " | ".join(
                    f"{1e3 * t[k][0]:.0f} / {1e3 * t[k][1]:.0f}" if k in t else "-"
                    for k in ("acsconv", "split3", "slices2d", "dense", "floor", "ours")
                )
                ratios = [
                    f"{m['ours'][0] / m[ref][0]:.2f}, {m['ours'][1] / m[ref][1]:.2f}"
                    for m, ref in ((t, "acsconv"), (t, "floor"), (fast, "acsconv"))
                ]
                row = f"| {s.name} | {fmt_name} | {'fwd+bwd' if backward else 'fwd'} | {cells} | {' | '.join(ratios)} |"
                print(row, flush=True)
                lines.append(row)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
