"""A/B: the ACS weight gradient with the flat axis first (``acs_plane.PlaneConv``) against plain conv3d.

CPU training only. Layers: forward + backward (input and weight gradients) of ACS
layers from the presets' decoders and the operator benchmark's headline layer; then
whole training steps of one preset (forward, region loss, backward, AdamW). Both arms
run in one process, alternating (``ACSPaths(plane_grad=...)`` for the layers, the model
configured inside ``acs_paths(plane_grad=...)`` for the steps; both on the ``parts`` path),
so machine noise hits both alike; each cell is the median of ``--repeats`` rounds.

    python benchmarks/bench_plane_grad.py [--threads 2] [--repeats 5] [--model tf_efficientnet_lite0] [--steps 4]
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (set before torch loads): on a shared
# machine spinning threads turn another process's load into 5x slower steps.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from napari_acs.models import create_model
from napari_acs.models.acs_conv import acs_conv3d
from napari_acs.models.acs_paths import ACSPaths, acs_paths, configure_acs
from napari_acs.models.cpu_info import describe_cpu
from napari_acs.training.losses import RegionLoss
from napari_acs.training.step import train_step

# (name, batch, in channels, out channels, size): 3x3 ACS layers, stride 1
LAYERS = [
    ("lite0 decoder 88->32, 24^3", 2, 88, 32, 24),
    ("lite0 decoder 48->16, 48^3", 2, 48, 16, 48),
    ("lite0 decoder 16->16, 48^3", 2, 16, 16, 48),
    ("resnet34 decoder 128->32, 48^3", 2, 128, 32, 48),
    ("headline 64->64, 64^3", 1, 64, 64, 64),
]


def _ab(run: Callable[[bool], object], repeats: int) -> dict[bool, float]:
    """Median seconds of ``run(plane)`` with the plane gradient on and off, alternating which goes first."""
    times: dict[bool, list[float]] = {True: [], False: []}
    run(True)
    run(False)
    for i in range(repeats):
        for plane in (True, False) if i % 2 else (False, True):
            start = time.perf_counter()
            run(plane)
            times[plane].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _layer(batch: int, c_in: int, c_out: int, size: int) -> Callable[[bool], object]:
    torch.manual_seed(0)
    x = torch.randn(batch, c_in, size, size, size, requires_grad=True)
    weight = torch.randn(c_out, c_in, 3, 3, requires_grad=True)
    grad = torch.randn(batch, c_out, size, size, size)
    arms = {plane: ACSPaths(cpu_train="parts", plane_grad=plane) for plane in (True, False)}

    def run(plane: bool) -> None:
        x.grad = weight.grad = None
        acs_conv3d(x, weight, None, 1, 1, paths=arms[plane]).backward(grad)

    return run


def _step(model_name: str) -> Callable[[bool], object]:
    """A training step of ``model_name`` with its layers' rule paths, plane gradient forced on or off."""
    torch.manual_seed(0)
    model = create_model(model_name, conv="acs", pretrained=False).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.randn(2, 4, 96, 96, 96)
    y = (torch.rand(2, 3, 96, 96, 96) > 0.9).float()

    def run(plane: bool) -> None:
        with acs_paths(plane_grad=plane):
            configure_acs(model, "cpu", training=True)
        train_step(model, x, y, RegionLoss(), optimizer, scaler, amp=False)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=4, help="alternating rounds of whole training steps (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Machine: {platform.machine()}, {describe_cpu()}. Command: `python "
          f"benchmarks/bench_plane_grad.py --threads {args.threads} --repeats {args.repeats} --model {args.model} "
          f"--steps {args.steps}`\n")
    print("| forward + backward | plane gradient (ms) | conv3d gradient (ms) | ratio |\n|---|---|---|---|")
    rows = [(name, _layer(*shape), args.repeats) for name, *shape in LAYERS]
    if args.steps:
        rows.append((f"{args.model} training step, 2x4x96^3", _step(args.model), args.steps))
    for name, run, repeats in rows:
        t = _ab(run, repeats)
        print(f"| {name} | {t[True] * 1e3:.0f} | {t[False] * 1e3:.0f} | {t[True] / t[False]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
