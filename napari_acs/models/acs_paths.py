"""Which implementation each ACS layer runs, fixed when the layer is built or configured.

Every :class:`~napari_acs.models.acs_conv.ACSConv3d` holds an :class:`ACSPaths` in
``layer.paths``, set when it is built from the rules below for this process's CPU kind
(:func:`napari_acs.models.cpu_info.cpu_kind`), and set again by :func:`configure_acs`
for the device and mode a model is prepared for (the inference engine on its private
copy, the training loop when a run starts), optionally by a short measurement of each
layer shape. The functional :func:`~napari_acs.models.acs_conv.acs_conv3d` takes
``paths=`` (default: the rules for its arguments). No module flag is read per call:
to force a path, benchmarks and tests open the scoped :func:`acs_paths` context, which
applies to layers built, models configured and functional calls made inside it.

The implementations (every one computes the same numbers: ``F.conv3d`` with the
zero-filled ``k x k x k`` kernel of ``acs_kernel_3d``):

- ``parts``: one conv3d per axial / coronal / sagittal part, written into one output
  (acsconv's structure). Options: ``plane_grad`` (CPU training, NCDHW input: the
  coronal and sagittal weight gradients with the flat axis moved first,
  :mod:`napari_acs.models.acs_plane`) and ``channel_block`` (CPU channels-last
  inference: each part's output channels computed zero-padded to a multiple of it).
- ``dense``: one conv3d with the zero-filled kernel (3x the FLOPs, one call, one read
  of the input).
- ``slices``: depthwise layers only (others run ``parts``): each part as one depthwise
  conv2d over its slices (:mod:`napari_acs.models.acs_depthwise`).
- 1 x 1 kernels are always one conv3d (the three placements coincide).

Dispatch rules (``rule_paths``), keyed on ``cpu_kind()``. Layer classes: "dw" depthwise;
"few in" ``groups == 1`` and ``C_in <= 8`` (the 4-modality stem); "thin" ``groups == 1``
and ``C_out <= 16`` (one oneDNN AVX-512 block; ``<= 32`` in NCDHW training); the
zero-filled kernel only for ``k <= 3`` (a 7x7 stem is 2x slower that way: 343 taps).
Evidence: time ratios chosen / alternative, one process, interleaved, 2 threads,
float32. Zen 1 = AMD EPYC family 23 model 1 (AVX2; benchmarks/RESULTS*.md, sessions 1-4);
Zen 4+ = AMD EPYC family 26 model 2 (AVX-512; 2026-12-02, CPU time). "2x" = batch 2.

+-----------------------+--------------------+--------------------+----------------------------------------------+
| situation, layer      | AVX2 (Zen 1)       | AVX-512 (Zen 4+)   | evidence                                     |
+=======================+====================+====================+==============================================+
| any, k = 1            | one conv3d         | one conv3d         | the three placements coincide                |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CUDA, any             | dense              | dense              | H200 AMP train step lite0 0.043 vs 0.059 s,  |
|                       |                    |                    | resnet34 0.037 vs 0.070 s (launch-bound)     |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train, dw         | slices             | slices             | 96ch 48^3 fwd+bwd: Zen 1 0.29 of acsconv;    |
| (NCDHW; CL if k <= 3) |                    |                    | Zen 4+ 0.34 NCDHW; CL 2x 32/96/144ch: parts  |
|                       |                    |                    | 1.07-1.95, dense 1.12-2.6 of slices          |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train CL, dw k > 3| parts              | parts              | 5x5 fwd+bwd: Zen 1 slices 1.19 of acsconv;   |
|                       |                    |                    | Zen 4+ slices 2.11 of acsconv, parts 0.21-   |
|                       |                    |                    | 0.83 of slices (240/144/672ch, 6-24^3)       |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train, few in     | dense              | dense              | stem 4->32 s2: Zen 1 0.81 of acsconv;        |
|                       |                    |                    | Zen 4+ 2x 96^3 0.58 (NCDHW), 0.43 (CL)       |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train NCDHW, thin | parts, plane_grad  | dense (C_out <= 32)| Zen 4+ 2x48^3: 48->16 0.54, 16->16 0.64,     |
| (C_out <= 32)         |                    |                    | 96->32 0.76, 128->32 0.73, 32->32 0.89;      |
|                       |                    |                    | 2x24^3 88->32 1.00; C_out 48: 1.12-2.0 (kept |
|                       |                    |                    | parts); Zen 1: dense no better (RESULTS.md)  |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train CL, thin    | parts              | dense (C_out <= 16)| Zen 4+ 2x48^3 48->16 0.71, 16->16 0.69;      |
|                       |                    |                    | C_out 32: 1.33-1.36 (kept parts)             |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU train, other      | parts, plane_grad  | parts              | plane_grad: Zen 1 0.84-0.97 per layer, lite0 |
|                       | (NCDHW input only) |                    | step 0.93. Zen 4+: the weight gradient costs |
|                       |                    |                    | the same in every orientation (64->22 64^3:  |
|                       |                    |                    | 108/109/116 ms), plane_grad 0.94-1.23 per    |
|                       |                    |                    | layer (2 runs), lite0 step 1.08; CL input:   |
|                       |                    |                    | 1.41 vs 0.97 of acsconv (NCDHW copies)       |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU infer NCDHW, dw   | slices             | slices             | fwd: Zen 1 0.55 of acsconv; Zen 4+ 96ch      |
|                       |                    |                    | 48^3 0.78 of parts, dense 2.3                |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU infer NCDHW,      | parts              | dense              | Zen 4+ 1x72^3 48->16 0.58, 16->16 0.67; stem |
| few in or thin        |                    |                    | 1x128^3 s2 0.51-0.73 (0.79 of acsconv, 21    |
|                       |                    |                    | rounds); C_out 32: 1.20 (kept parts)         |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU infer CL, dw      | dense (k <= 3)     | dense (k <= 3)     | Zen 1 fwd 0.69 of acsconv; Zen 4+ 0.67       |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU infer CL, few in  | dense              | dense              | Zen 1 3x3 stem 0.78 (thin: Zen 4+ only)      |
| or thin               |                    |                    | Zen 4+ C_out 16 at 48-96^3: 0.75-0.86        |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| CPU infer CL, other   | parts,             | parts,             | Zen 1 block 8: 0.83 of acsconv. Zen 4+ block |
|                       | channel_block 8    | channel_block 1    | 8 / 16 vs 1: headline 1.23 / 1.28, 48->16    |
|                       |                    |                    | 1.09 / 1.40, 7 other decoder layers 0.82-1.10|
|                       |                    |                    | (AVX-512's block is 16: 22 -> 24 saves none) |
+-----------------------+--------------------+--------------------+----------------------------------------------+
| other devices         | parts              | parts              | (MPS: untested)                              |
+-----------------------+--------------------+--------------------+----------------------------------------------+
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn

from napari_acs.models.cpu_info import cpu_kind

Path = Literal["parts", "dense", "slices"]
PATHS: tuple[Path, ...] = ("parts", "dense", "slices")
DENSE_MAX_K = 3  # a 7x7 stem is 2x slower as the zero-filled kernel (343 taps)
_FEW_INPUTS = 8  # the 4-modality stem
_THIN = 16  # AVX-512: output channels of one oneDNN block: the zero-filled kernel wins
_THIN_TRAIN = 32  # AVX-512, NCDHW training: two blocks still win (NCDHW reorders cost per call)


class LayerShape(NamedTuple):
    """What the rules look at: channels, square kernel size and groups of one ACS layer."""

    in_channels: int
    out_channels: int
    kernel_size: int
    groups: int

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels == self.out_channels


@dataclass(frozen=True)
class ACSPaths:
    """The implementation one ACS layer runs in each situation (see the module docstring).

    ``cuda``: any CUDA call; ``cpu_train`` / ``cpu_train_cl``: CPU with gradients, NCDHW /
    channels-last-3d input; ``cpu_infer`` / ``cpu_infer_cl``: CPU without gradients.
    Other devices run ``parts``.
    """

    cuda: Path = "dense"
    cpu_train: Path = "parts"
    cpu_train_cl: Path = "parts"
    cpu_infer: Path = "parts"
    cpu_infer_cl: Path = "parts"
    plane_grad: bool = False
    channel_block: int = 1

    def __post_init__(self) -> None:
        for name in ("cuda", "cpu_train", "cpu_train_cl", "cpu_infer", "cpu_infer_cl"):
            if getattr(self, name) not in PATHS:
                raise ValueError(f"ACSPaths.{name} must be one of {PATHS}, got {getattr(self, name)!r}")
        if self.cuda == "slices":
            raise ValueError("ACSPaths.cuda: 'slices' is a CPU path")
        if not isinstance(self.channel_block, int) or self.channel_block < 1:
            raise ValueError(f"ACSPaths.channel_block must be an int >= 1, got {self.channel_block!r}")

    def path(self, device_type: str, needs_grad: bool, channels_last: bool) -> Path:
        """The implementation for one call."""
        if device_type == "cuda":
            return self.cuda
        if device_type != "cpu":
            return "parts"
        if needs_grad:
            return self.cpu_train_cl if channels_last else self.cpu_train
        return self.cpu_infer_cl if channels_last else self.cpu_infer

    def for_layer(self, layer: LayerShape) -> ACSPaths:
        """These choices with ``slices`` replaced by ``parts`` where ``layer`` is not depthwise."""
        if layer.depthwise:
            return self
        fixed = {f.name: "parts" for f in dataclasses.fields(self) if getattr(self, f.name) == "slices"}
        return dataclasses.replace(self, **fixed) if fixed else self


def rule_paths(layer: LayerShape, kind: str = "avx2") -> ACSPaths:
    """The rule table's choices for ``layer`` on a CPU of ``kind`` (``"avx2"`` or ``"avx512"``)."""
    avx512 = kind == "avx512"
    dense_ok = layer.groups == 1 and layer.kernel_size <= DENSE_MAX_K
    few_inputs = dense_ok and layer.in_channels <= _FEW_INPUTS
    thin = avx512 and dense_ok and layer.out_channels <= _THIN
    thin_train = avx512 and dense_ok and layer.out_channels <= _THIN_TRAIN

    def dense_if(condition: bool) -> Path:
        return "dense" if condition else "parts"

    if layer.depthwise:
        small = layer.kernel_size <= DENSE_MAX_K
        train = infer = "slices"
        train_cl = "slices" if small else "parts"
        infer_cl = dense_if(small)
    else:
        train = dense_if(few_inputs or thin_train)
        train_cl = dense_if(few_inputs or thin)
        infer = dense_if(avx512 and (few_inputs or thin))
        infer_cl = dense_if(few_inputs or thin)
    return ACSPaths(
        cuda="dense",
        cpu_train=train,
        cpu_train_cl=train_cl,
        cpu_infer=infer,
        cpu_infer_cl=infer_cl,
        plane_grad=not avx512,
        channel_block=1 if avx512 else 8,
    )


_FORCED: contextvars.ContextVar[tuple[tuple[str, object], ...]] = contextvars.ContextVar("acs_paths", default=())
_FIELDS = frozenset(f.name for f in dataclasses.fields(ACSPaths))


@contextlib.contextmanager
def acs_paths(**choices: object) -> Iterator[None]:
    """Force ``ACSPaths`` fields while the context is open (timm ``set_layer_config`` style).

    Applies to ACS layers built, models passed to :func:`configure_acs` and functional
    calls without ``paths=`` inside the context; nested contexts add to the outer one;
    the previous choices come back on exit, also after an exception. Per thread and
    asyncio task (a ``contextvars.ContextVar``)::

        with acs_paths(cpu_train="parts", plane_grad=False):
            model = create_model("resnet34", conv="acs")
    """
    unknown = set(choices) - _FIELDS
    if unknown:
        raise TypeError(f"acs_paths: unknown choices {sorted(unknown)}; known: {sorted(_FIELDS)}")
    merged = {**dict(_FORCED.get()), **choices}
    ACSPaths(**merged)  # validate the values now, not at the first layer
    token = _FORCED.set(tuple(sorted(merged.items())))
    try:
        yield
    finally:
        _FORCED.reset(token)


def forced_paths() -> dict[str, object]:
    """The fields forced by the open :func:`acs_paths` contexts (empty outside any)."""
    return dict(_FORCED.get())


def chosen_paths(layer: LayerShape, kind: str | None = None) -> ACSPaths:
    """The rules for ``layer`` on this CPU (or ``kind``), with the open contexts' forced fields."""
    return _chosen(layer, kind or cpu_kind(), _FORCED.get())


@functools.lru_cache(maxsize=1024)
def _chosen(layer: LayerShape, kind: str, forced: tuple[tuple[str, object], ...]) -> ACSPaths:
    paths = rule_paths(layer, kind)
    if forced:
        paths = dataclasses.replace(paths, **dict(forced))
    return paths.for_layer(layer)


def layer_shape(layer: nn.Module) -> LayerShape:
    """The :class:`LayerShape` of an ``ACSConv3d``."""
    return LayerShape(layer.in_channels, layer.out_channels, layer.kernel_size, layer.groups)


def configure_acs(
    model: nn.Module,
    device: torch.device | str,
    *,
    training: bool,
    measure: bool = False,
    input_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Set every ``ACSConv3d`` layer's ``paths`` for ``device`` and the mode; returns ``model``.

    Without ``measure`` this applies the rule table (no forward pass, microseconds per
    layer); the fields forced by open :func:`acs_paths` contexts win. With ``measure``,
    each layer shape's path for this device and mode is also timed, once per machine
    and shape (:mod:`napari_acs.models.acs_measure`; ``input_shape`` ``(N, C, X, Y, Z)``
    of the probe, default the preset's patch size): a few seconds for a preset.
    """
    from napari_acs.models.acs_conv import ACSConv3d

    device = torch.device(device)
    kind = cpu_kind()
    layers = [m for m in model.modules() if isinstance(m, ACSConv3d)]
    for m in layers:
        m.paths = chosen_paths(layer_shape(m), kind)
    if measure and layers:
        from napari_acs.models.acs_measure import measure_paths

        measure_paths(model, layers, device, training=training, input_shape=input_shape)
    return model
