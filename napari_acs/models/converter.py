"""2D -> 3D model conversion: ACS convolutions (:func:`convert_to_acs`) or native
``k x k x k`` ones (:func:`convert_to_3d`).

One mechanism walks the module tree; a *conv factory* decides what each ``nn.Conv2d``
becomes, and every other 2D layer gets its exact 3D counterpart with the same
Parameter and buffer objects: norms (BatchNorm, timm norm-act, LayerNorm2d),
pooling (plain, "same", adaptive, global), upsampling, Dropout2d, squeeze-excitation
blocks (the squeeze averages over all three spatial axes) and ConvNeXt blocks.

Modules the converter has no rule for are kept when their ``forward`` (and the methods
it calls) shows no 2D-only code: no ``*2d`` call, no reduction over two spatial dims,
no 4-d permute/reshape, no ``[-2:]`` sizes. Anything else raises
:class:`UnsupportedModuleError` naming the module, before the model is touched.
:func:`find_2d_ops` checks a converted model at run time.
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
import textwrap
from collections.abc import Callable
from functools import cache, partial

import torch
import torch.nn.functional as F
from timm.layers import (
    BatchNormAct2d,
    Conv2dSame,
    EffectiveSEModule,
    LayerNorm2d,
    MixedConv2d,
    SelectAdaptivePool2d,
    SEModule,
)
from timm.layers.adaptive_avgmax_pool import (
    AdaptiveAvgMaxPool2d,
    AdaptiveCatAvgMaxPool2d,
    FastAdaptiveAvgMaxPool,
    FastAdaptiveAvgPool,
    FastAdaptiveCatAvgMaxPool,
    FastAdaptiveMaxPool,
)
from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models.convnext import ConvNeXtBlock
from timm.models.vgg import ConvMlp as VggConvMlp
from torch import nn
from torch.overrides import TorchFunctionMode

from .acs_conv import ACSConv3d, Padding, pad_arg, same_padding

ConvFactory = Callable[[nn.Conv2d, Padding], nn.Module]
"""Builds the 3D layer for a 2D convolution, given its padding (int, "same" or "valid")."""


class UnsupportedModuleError(TypeError):
    """A module the converter cannot turn into an exact 3D counterpart."""

    def __init__(self, path: str, module: nn.Module, reason: str) -> None:
        cls = type(module)
        super().__init__(f"cannot convert {path or '<root>'} ({cls.__module__}.{cls.__qualname__}) to 3D: {reason}")
        self.path = path
        self.module_type = cls


def convert_to_acs(module: nn.Module) -> nn.Module:
    """Turn a 2D network into a 3D one with ACS convolutions, in place, and return it.

    Every ``nn.Conv2d`` becomes an :class:`ACSConv3d` holding the same ``weight`` and
    ``bias`` Parameters; other 2D layers become their 3D counterparts (see module doc).
    Input ``(N, C, X, Y, Z)``. The module's children are replaced in place; a module that
    is itself a 2D layer is returned converted. Nothing changes if an error is raised.
    """
    return _convert(module, _acs_conv)


def convert_to_3d(module: nn.Module, inflate: bool = False) -> nn.Module:
    """The native-3D twin of :func:`convert_to_acs`: each ``nn.Conv2d`` becomes a
    ``k x k x k`` ``nn.Conv3d`` (same stride, padding, dilation, groups).

    Its weights are PyTorch's default initialisation, or with ``inflate=True`` the 2D
    kernel repeated ``k`` times along X and divided by ``k`` (I3D inflation; the bias
    is copied). All other layers are converted exactly as by :func:`convert_to_acs`.
    """
    return _convert(module, partial(_native_conv, inflate=inflate))


def find_2d_ops(model: nn.Module, *inputs: torch.Tensor) -> list[str]:
    """Run ``model(*inputs)`` and list 2D operations it performs, as ``"path (Type): op"``.

    Flags calls of ``*2d`` functions and reductions over one or two of the three
    spatial axes of a 5-D tensor (e.g. ``x.mean((2, 3))``). An empty list is expected
    from a converted model.
    """
    found: list[str] = []
    stack: list[nn.Module] = []
    names = {m: name or "<root>" for name, m in model.named_modules()}

    def enter(mod: nn.Module, _: tuple) -> None:
        stack.append(mod)

    def leave(*_: object) -> None:
        stack.pop()

    def report(op: str) -> None:
        if not any(isinstance(m, ACSConv3d) for m in stack):  # its CPU depthwise path is conv2d over slices
            where = f"{names[stack[-1]]} ({type(stack[-1]).__name__})" if stack else "<root>"
            found.append(f"{where}: {op}")

    hooks = [h for m in model.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with _Spy2d(report), torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(found))


# --- 3D counterparts of timm / torch 2D layers --------------------------------------------


class BatchNormAct3d(nn.BatchNorm3d):
    """timm ``BatchNormAct2d`` for ``(N, C, X, Y, Z)``: batch norm, then its ``drop`` and ``act``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class LayerNorm3d(nn.LayerNorm):
    """timm ``LayerNorm2d`` for ``(N, C, X, Y, Z)``: layer norm over channels at each voxel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 4, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 4, 1, 2, 3)


class SqueezeExcite3d(SqueezeExcite):
    """EfficientNet/MobileNet squeeze-excitation; the squeeze averages over X, Y and Z."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3, 4), keepdim=True))))
        return x * self.gate(x_se)


class SEModule3d(SEModule):
    """timm ``SEModule`` (ResNet, RegNet, ...); squeeze (and optional max) over X, Y and Z."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean((2, 3, 4), keepdim=True)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax((2, 3, 4), keepdim=True)
        x_se = self.fc2(self.act(self.bn(self.fc1(x_se))))
        return x * self.gate(x_se)


class EffectiveSEModule3d(EffectiveSEModule):
    """timm ``EffectiveSEModule``; squeeze (and optional max) over X, Y and Z."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean((2, 3, 4), keepdim=True)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax((2, 3, 4), keepdim=True)
        return x * self.gate(self.fc(x_se))


class ConvNeXtBlock3d(ConvNeXtBlock):
    """timm ``ConvNeXtBlock`` whose channels-last MLP permutes ``(N, C, X, Y, Z)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x)
        if self.use_conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 4, 1))).permute(0, 4, 1, 2, 3)
        if self.gamma is not None:
            x = x.mul(self.gamma.reshape(1, -1, 1, 1, 1))
        return self.drop_path(x) + self.shortcut(shortcut)


class VggConvMlp3d(VggConvMlp):
    """timm VGG ``pre_logits``: inputs smaller than the ``k x k x k`` fc1 kernel are
    adaptively average-pooled up to ``k`` on each short axis first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.input_kernel_size
        if min(x.shape[-3:]) < k:
            x = F.adaptive_avg_pool3d(x, [max(k, n) for n in x.shape[-3:]])
        x = self.drop(self.act1(self.fc1(x)))
        return self.act2(self.fc2(x))


def _pad_same(x: torch.Tensor, k: int, stride: int, dilation: int = 1, value: float = 0.0) -> torch.Tensor:
    """timm ``pad_same`` on the three spatial axes of ``(N, C, X, Y, Z)``."""
    return F.pad(x, pad_arg([same_padding(n, k, stride, dilation) for n in x.shape[2:]]), value=value)


class Conv3dSame(nn.Conv3d):
    """``nn.Conv3d`` with timm's dynamic "same" padding (``ceil(n / stride)`` outputs per axis)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
        pads = pad_arg([same_padding(n, k, s, d) for n in x.shape[2:]])
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.conv3d(F.pad(x, pads, mode=mode), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MaxPool3dSame(nn.MaxPool3d):
    """timm ``MaxPool2dSame`` in 3D: -inf "same" padding, then max pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size, self.stride, self.dilation, value=-float("inf"))
        return F.max_pool3d(x, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)


class AvgPool3dSame(nn.AvgPool3d):
    """timm ``AvgPool2dSame`` in 3D: zero "same" padding, then average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size, self.stride)
        return F.avg_pool3d(x, self.kernel_size, self.stride, 0, self.ceil_mode, self.count_include_pad)


class AdaptiveAvgMaxPool3d(nn.Module):
    """timm ``AdaptiveAvgMaxPool2d`` in 3D: mean of adaptive average and max pooling."""

    def __init__(self, output_size: int = 1) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.adaptive_avg_pool3d(x, self.output_size) + F.adaptive_max_pool3d(x, self.output_size))


class AdaptiveCatAvgMaxPool3d(AdaptiveAvgMaxPool3d):
    """timm ``AdaptiveCatAvgMaxPool2d`` in 3D: average and max pooling stacked on channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((F.adaptive_avg_pool3d(x, self.output_size), F.adaptive_max_pool3d(x, self.output_size)), 1)


# --- the conversion rules ------------------------------------------------------------------


def _acs_conv(conv: nn.Conv2d, padding: Padding) -> nn.Module:
    return ACSConv3d.from_conv2d(conv, padding)


def _native_conv(conv: nn.Conv2d, padding: Padding, inflate: bool) -> nn.Module:
    k = _one(conv.kernel_size, "kernel_size")
    w = conv.weight
    cls = Conv3dSame if padding == "same" else nn.Conv3d
    layer = cls(
        conv.in_channels,
        conv.out_channels,
        k,
        _one(conv.stride, "stride"),
        0 if padding == "same" else padding,
        _one(conv.dilation, "dilation"),
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    if inflate:
        with torch.no_grad():
            layer.weight.copy_(w.unsqueeze(2).expand(-1, -1, k, -1, -1) / k)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
    return layer


def _conv(m: nn.Conv2d, conv_factory: ConvFactory) -> nn.Module:
    padding = m.padding if isinstance(m.padding, str) else _one(m.padding, "padding")
    return conv_factory(m, padding)


def _conv_same(m: Conv2dSame, conv_factory: ConvFactory) -> nn.Module:
    return conv_factory(m, "same")


def _same_class(cls3d: type[nn.Module]) -> Callable[[nn.Module, ConvFactory], nn.Module]:
    """Rule for layers whose 3D class keeps the 2D one's state: a shallow copy of class ``cls3d``."""

    def rule(m: nn.Module, conv_factory: ConvFactory) -> nn.Module:
        new = copy.copy(m)  # shares every Parameter, buffer and child; own containers
        new._parameters = dict(m._parameters)
        new._buffers = dict(m._buffers)
        new._modules = dict(m._modules)
        new.__class__ = cls3d
        return new

    return rule


def _max_pool(m: nn.MaxPool2d, conv_factory: ConvFactory) -> nn.Module:
    cls = MaxPool3dSame if isinstance(m, MaxPool2dSame) else nn.MaxPool3d
    return cls(
        _one(m.kernel_size, "kernel_size"),
        _one(m.stride, "stride"),
        _one(m.padding, "padding"),
        _one(m.dilation, "dilation"),
        m.return_indices,
        m.ceil_mode,
    )


def _avg_pool(m: nn.AvgPool2d, conv_factory: ConvFactory) -> nn.Module:
    if m.divisor_override is not None:
        raise ValueError(f"divisor_override={m.divisor_override} has no 3D counterpart")
    cls = AvgPool3dSame if isinstance(m, AvgPool2dSame) else nn.AvgPool3d
    return cls(
        _one(m.kernel_size, "kernel_size"),
        _one(m.stride, "stride"),
        _one(m.padding, "padding"),
        m.ceil_mode,
        m.count_include_pad,
    )


def _adaptive(m: nn.Module, conv_factory: ConvFactory) -> nn.Module:
    size = _one(m.output_size, "output_size")
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(size, m.return_indices)
    cls = {
        nn.AdaptiveAvgPool2d: nn.AdaptiveAvgPool3d,
        AdaptiveAvgMaxPool2d: AdaptiveAvgMaxPool3d,
        AdaptiveCatAvgMaxPool2d: AdaptiveCatAvgMaxPool3d,
    }[type(m)]
    return cls(size)


def _fast_pool(m: nn.Module, conv_factory: ConvFactory) -> nn.Module:
    """timm's Fast*Pool reduce ``dim`` (or ``dim_reduce``): (2, 3) becomes (2, 3, 4)."""
    attr = "dim_reduce" if hasattr(m, "dim_reduce") else "dim"
    if tuple(getattr(m, attr)) == (2, 3, 4):  # already converted
        return m
    if tuple(getattr(m, attr)) != (2, 3):
        raise ValueError(f"only NCHW pooling converts, this one reduces dims {getattr(m, attr)}")
    new = _same_class(type(m))(m, conv_factory)
    setattr(new, attr, (2, 3, 4))
    return new


_UPSAMPLE_MODES = {
    "nearest": "nearest",
    "nearest-exact": "nearest-exact",
    "bilinear": "trilinear",
    "trilinear": "trilinear",
    "area": "area",
}


def _upsample(m: nn.Upsample, conv_factory: ConvFactory) -> nn.Module:
    if m.mode not in _UPSAMPLE_MODES:
        raise ValueError(f"upsampling mode {m.mode!r} has no 3D counterpart")
    return nn.Upsample(
        None if m.size is None else _one(m.size, "size"),
        None if m.scale_factor is None else _one(m.scale_factor, "scale_factor"),
        _UPSAMPLE_MODES[m.mode],
        m.align_corners,
        m.recompute_scale_factor,
    )


def _dropout(m: nn.Dropout2d, conv_factory: ConvFactory) -> nn.Module:
    return nn.Dropout3d(m.p, m.inplace)


_Rule = Callable[[nn.Module, ConvFactory], nn.Module]

_RULES: dict[type[nn.Module], _Rule] = {
    nn.Conv2d: _conv,
    Conv2dSame: _conv_same,
    nn.BatchNorm2d: _same_class(nn.BatchNorm3d),
    nn.InstanceNorm2d: _same_class(nn.InstanceNorm3d),
    BatchNormAct2d: _same_class(BatchNormAct3d),
    LayerNorm2d: _same_class(LayerNorm3d),
    nn.MaxPool2d: _max_pool,
    MaxPool2dSame: _max_pool,
    nn.AvgPool2d: _avg_pool,
    AvgPool2dSame: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive,
    nn.AdaptiveMaxPool2d: _adaptive,
    AdaptiveAvgMaxPool2d: _adaptive,
    AdaptiveCatAvgMaxPool2d: _adaptive,
    FastAdaptiveAvgPool: _fast_pool,
    FastAdaptiveMaxPool: _fast_pool,
    FastAdaptiveAvgMaxPool: _fast_pool,
    FastAdaptiveCatAvgMaxPool: _fast_pool,
    nn.Upsample: _upsample,
    nn.UpsamplingNearest2d: _upsample,
    nn.UpsamplingBilinear2d: _upsample,
    nn.Dropout2d: _dropout,
    SqueezeExcite: _same_class(SqueezeExcite3d),
    SEModule: _same_class(SEModule3d),
    EffectiveSEModule: _same_class(EffectiveSEModule3d),
    ConvNeXtBlock: _same_class(ConvNeXtBlock3d),
    VggConvMlp: _same_class(VggConvMlp3d),
}

# Already 3D, or 2D in name only: SelectAdaptivePool2d only calls its pool and flatten,
# MixedConv2d (timm create_conv2d with several kernel sizes) splits channels among its convs.
_KEEP: frozenset[type[nn.Module]] = frozenset(
    {
        ACSConv3d,
        Conv3dSame,
        BatchNormAct3d,
        LayerNorm3d,
        SqueezeExcite3d,
        SEModule3d,
        EffectiveSEModule3d,
        ConvNeXtBlock3d,
        VggConvMlp3d,
        MaxPool3dSame,
        AvgPool3dSame,
        SelectAdaptivePool2d,
        MixedConv2d,
    }
)


# --- the walk ------------------------------------------------------------------------------


def _convert(module: nn.Module, conv_factory: ConvFactory) -> nn.Module:
    """Build every replacement first (raising before any change), then apply them."""
    pending: list[tuple[nn.Module, str, nn.Module]] = []
    root = _visit(module, "", conv_factory, pending, {})
    for parent, name, child in pending:
        parent._modules[name] = child
    return root


def _visit(
    m: nn.Module, path: str, conv_factory: ConvFactory, pending: list[tuple[nn.Module, str, nn.Module]], memo: dict
) -> nn.Module:
    if id(m) in memo:
        return memo[id(m)]
    new = _convert_one(m, path, conv_factory)
    for name, child in list(new._modules.items()):
        if child is not None:
            new_child = _visit(child, f"{path}.{name}" if path else name, conv_factory, pending, memo)
            if new_child is not child:
                pending.append((new, name, new_child))
    memo[id(m)] = new
    return new


def _convert_one(m: nn.Module, path: str, conv_factory: ConvFactory) -> nn.Module:
    cls = type(m)
    if cls in _KEEP:
        return m
    rule_cls = next((c for c in cls.__mro__ if c in _RULES), None)
    if rule_cls is not None:
        if rule_cls is not cls and _overrides_forward(cls, rule_cls):
            raise UnsupportedModuleError(path, m, f"it subclasses {rule_cls.__name__} with its own forward")
        try:
            new = _RULES[rule_cls](m, conv_factory)
        except ValueError as e:
            raise UnsupportedModuleError(path, m, str(e)) from e
        if new is not m:
            _move_hooks(m, new)
            new.training = m.training  # not .train(): that would also set the 2D children
        return new
    if "2d" in cls.__name__.lower():
        raise UnsupportedModuleError(path, m, "no 3D rule for this 2D layer")
    problems = _forward_2d_code(cls)
    if problems:
        raise UnsupportedModuleError(path, m, "its forward has 2D-only code: " + "; ".join(problems))
    return m


def _overrides_forward(cls: type, base: type) -> bool:
    return any(getattr(cls, name) is not getattr(base, name) for name in ("forward", "_conv_forward") if hasattr(base, name))


def _move_hooks(old: nn.Module, new: nn.Module) -> None:
    """Keep the hooks registered on ``old`` (e.g. timm feature hooks) working on ``new``."""
    for name, value in vars(old).items():
        if name.startswith("_") and "hooks" in name:
            setattr(new, name, value)


def _one(value: int | float | tuple, name: str) -> int | float:
    """The single value of a scalar or of a tuple of equal values (2D -> isotropic 3D)."""
    if not isinstance(value, (tuple, list)):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"{name}={tuple(value)} differs between the 2D axes; no isotropic 3D counterpart")
    return value[0]


# --- finding 2D-only code ------------------------------------------------------------------

_2D_CODE = re.compile(
    r"""
    (?<![\w.])(?!self\.)[A-Za-z_][\w.]*2d(?![A-Za-z0-9])        # F.conv2d(, max_pool2d, conv2d_same ...
  | \bpixel_(?:un)?shuffle\b
  | [(\[](?:2,\ 3|3,\ 2|-1,\ -2|-2,\ -1)[)\]]                 # (2, 3): two spatial dims
  | \[-2:\]                                                  # shape[-2:]
  | \.permute\(\d,\ \d,\ \d,\ \d\)                           # a 4-d permute
  | \.(?:view|reshape|expand)\(1,\ -1,\ 1,\ 1\)               # (1, C, 1, 1) broadcasting
  | \[:,\ None,\ None\]                                      # (C, 1, 1) broadcasting
  | \b\w+,\ \w+,\ \w+,\ \w+\ =\ [\w.]+\.(?:shape|size\(\))     # B, C, H, W = x.shape
""",
    re.X,
)


class _NoStrings(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.Constant("") if isinstance(node.value, str) else node


@cache
def _forward_2d_code(cls: type) -> tuple[str, ...]:
    """2D-only fragments in ``cls.forward`` and the methods of ``cls`` it calls on ``self``."""
    problems: list[str] = []
    todo, seen = ["forward"], set()
    while todo:
        name = todo.pop()
        fn = getattr(cls, name, None)
        if name in seen or fn is None or getattr(nn.Module, name, None) is fn:
            continue
        seen.add(name)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            problems.append(f"{name}: source unavailable")
            continue
        code = ast.unparse(_NoStrings().visit(tree))
        problems += [f"{name}: {hit.group(0)}" for hit in _2D_CODE.finditer(code)]
        todo += [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
            and inspect.isfunction(getattr(cls, node.func.attr, None))
        ]
    return tuple(problems)


_REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod"})


class _Spy2d(TorchFunctionMode):
    """Reports ``*2d`` functions and partial spatial reductions of 5-D tensors."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__()
        self.report = report

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if "2d" in name:
            self.report(name)
        elif name in _REDUCTIONS and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 5:
            dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if isinstance(dims, int):
                dims = (dims,)
            if isinstance(dims, (tuple, list)) and all(isinstance(d, int) for d in dims):
                spatial = {d % 5 for d in dims} & {2, 3, 4}
                if spatial and spatial != {2, 3, 4}:
                    self.report(f"{name} over dims {tuple(dims)}")
        return func(*args, **kwargs)
