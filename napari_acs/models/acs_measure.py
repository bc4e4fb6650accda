"""A short measurement of each ACS layer shape's paths, cached per machine and shape (``cudnn.benchmark`` style).

``configure_acs(model, device, training=..., measure=True)`` runs one probe forward to
record every ACS layer's input shape (at ``input_shape``, default the preset's patch size,
batch 2 in training and 1 in inference; channels-last on CPU inference, the engine's
layout), then times the candidate paths of each distinct shape for that situation
(forward, plus backward in training: one warm-up and :data:`RUNS` timed runs each, the
fastest run counts) and keeps the fastest, unless it beats the rule's choice by less than
:data:`MARGIN`. Results are cached in memory and on disk under
``$NAPARI_ACS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/napari-acs`` or
``~/.cache/napari-acs``; ``none`` disables the file), keyed by CPU model (or GPU name),
torch version, situation, layer and input shape. The file is versioned, replaced
atomically, and ignored when unreadable or of another version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from napari_acs.io.files import atomic_write_text, remove_stale_temporaries
from napari_acs.models.acs_paths import DENSE_MAX_K, ACSPaths, layer_shape
from napari_acs.models.cpu_info import cpu_model

CACHE_VERSION = 1
CACHE_FILE = f"acs_paths_v{CACHE_VERSION}.json"
RUNS = 2
MARGIN = 0.05
_MEMORY: dict[str, str] = {}


def cache_dir() -> Path | None:
    """The folder of the on-disk cache, or None when ``NAPARI_ACS_CACHE_DIR=none``."""
    chosen = os.environ.get("NAPARI_ACS_CACHE_DIR")
    if chosen:
        return None if chosen.lower() == "none" else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-acs"


def measure_paths(
    model: nn.Module,
    layers: Sequence[nn.Module],
    device: torch.device,
    *,
    training: bool,
    input_shape: Sequence[int] | None = None,
) -> None:
    """Set each layer's path for ``device`` and the mode to the fastest measured one."""
    channels_last = device.type == "cpu" and not training
    shapes = _input_shapes(model, layers, device, training, channels_last, input_shape)
    stored = _read_disk()
    found = False
    for layer in layers:
        if layer not in shapes or layer.kernel_size == 1:
            continue
        field = _field(device, training, channels_last)
        key = _key(layer, shapes[layer], device, training, channels_last)
        best = _MEMORY.get(key) or stored.get(key)
        if best is None:
            best = _fastest(layer, shapes[layer], device, training, channels_last, field)
            _MEMORY[key] = best
            found = True
        layer.paths = dataclasses.replace(layer.paths, **{field: best}).for_layer(layer_shape(layer))
    if found:
        _write_disk(dict(_MEMORY))


def _field(device: torch.device, training: bool, channels_last: bool) -> str:
    if device.type == "cuda":
        return "cuda"
    return ("cpu_train" if training else "cpu_infer") + ("_cl" if channels_last else "")


def _key(layer: nn.Module, shape: tuple[int, ...], device: torch.device, training: bool, channels_last: bool) -> str:
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    dtype = str(layer.weight.dtype).removeprefix("torch.")
    situation = f"{device.type} {'train' if training else 'infer'}{' cl' if channels_last else ''}"
    geometry = (
        f"{layer.in_channels}->{layer.out_channels} k{layer.kernel_size} s{layer.stride} p{layer.padding} "
        f"d{layer.dilation} g{layer.groups}"
    )
    return f"{machine} | torch {torch.__version__} | {situation} | {geometry} | {'x'.join(map(str, shape))} {dtype}"


def _input_shapes(
    model: nn.Module,
    layers: Sequence[nn.Module],
    device: torch.device,
    training: bool,
    channels_last: bool,
    input_shape: Sequence[int] | None,
) -> dict[nn.Module, tuple[int, ...]]:
    """Each layer's input shape in one probe forward (modes restored, no gradients)."""
    if input_shape is None:
        preset = getattr(model, "preset", None)
        patch = tuple(preset.patch_size) if preset is not None else (64, 64, 64)
        channels = getattr(model, "create_kwargs", {}).get("in_channels", layers[0].in_channels)
        input_shape = (2 if training else 1, channels, *patch)
    dtype = layers[0].weight.dtype
    probe = torch.randn(*input_shape, device=device, dtype=dtype)
    if channels_last:
        probe = probe.contiguous(memory_format=torch.channels_last_3d)
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(layer: nn.Module, args: tuple) -> None:
        shapes.setdefault(layer, tuple(args[0].shape))

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.training = mode
    return shapes


def _fastest(
    layer: nn.Module, shape: tuple[int, ...], device: torch.device, training: bool, channels_last: bool, field: str
) -> str:
    """The candidate path with the fastest run (the rule's choice unless beaten by MARGIN)."""
    rule = getattr(layer.paths, field)
    candidates = ["parts"] + (["dense"] if layer.kernel_size <= DENSE_MAX_K else [])
    candidates += ["slices"] if device.type == "cpu" and layer_shape(layer).depthwise else []
    if rule not in candidates:
        candidates.append(rule)
    x = torch.randn(shape, device=device, dtype=layer.weight.dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = layer.weight.detach().clone().requires_grad_(training)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(training)
    x.requires_grad_(training)
    times = {}
    for path in candidates:
        paths = dataclasses.replace(layer.paths, **{field: path})
        times[path] = _time(lambda p=paths: _run(layer, x, weight, bias, p, training), device)
    best = min(times, key=times.__getitem__)
    return rule if times[rule] <= times[best] * (1 + MARGIN) else best


def _run(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias, paths: ACSPaths, training: bool) -> None:
    from napari_acs.models.acs_conv import acs_conv3d

    args = (layer.stride, layer.padding, layer.dilation, layer.groups, layer.split, layer.padding_mode)
    with torch.no_grad() if not training else contextlib.nullcontext():
        out = acs_conv3d(x, weight, bias, *args, paths=paths)
        if training:
            out.backward(torch.ones_like(out))


def _time(run: Callable[[], None], device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run()
    best = float("inf")
    for _ in range(RUNS):
        sync()
        start = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _read_disk() -> dict[str, str]:
    """The cache file's entries; empty when absent, unreadable or of another version."""
    folder = cache_dir()
    if folder is None:
        return {}
    try:
        data = json.loads((folder / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("paths"), dict):
        return {}
    return {k: v for k, v in data["paths"].items() if isinstance(v, str) and v in ("parts", "dense", "slices")}


def _write_disk(entries: dict[str, str]) -> None:
    """Merge ``entries`` into the cache file, replaced atomically; failures leave it as it was."""
    folder = cache_dir()
    if folder is None:
        return
    with contextlib.suppress(OSError):  # a cache: a read-only or full disk only costs a measurement
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)  # what a killed process left
        merged = {**_read_disk(), **entries}
        atomic_write_text(folder / CACHE_FILE, json.dumps({"version": CACHE_VERSION, "paths": merged},
                                                          indent=0, sort_keys=True))
