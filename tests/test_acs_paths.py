"""ACS operator paths: fixed per layer when it is built or configured, forced only through
the scoped ``acs_paths`` context; every path gives the zero-embedded conv3d's numbers."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import torch
from test_acs_conv import FORMATS, reference_acs_conv
from torch import nn

from napari_acs.models import acs_conv, acs_measure
from napari_acs.models.acs_conv import ACSConv3d, acs_conv3d
from napari_acs.models.acs_paths import (
    ACSPaths,
    LayerShape,
    acs_paths,
    chosen_paths,
    configure_acs,
    forced_paths,
    layer_shape,
    rule_paths,
)
from napari_acs.models.cpu_info import cpu_kind, cpu_model

ROOT = Path(__file__).resolve().parents[1]
SITUATIONS = ("cpu_train", "cpu_train_cl", "cpu_infer", "cpu_infer_cl")

# (in, out, groups, k, stride, padding, dilation)
LAYERS = {
    "dense-26": (16, 26, 1, 3, 1, 1, 1),
    "few-inputs-same": (4, 10, 1, 3, 2, "same", 1),
    "dilated": (6, 12, 1, 3, 1, 2, 2),
    "depthwise": (9, 9, 9, 3, 1, 1, 1),
    "depthwise-k5-stride2-same": (8, 8, 8, 5, 2, "same", 1),
    "grouped-cut": (4, 20, 2, 3, 2, 1, 1),
    "even-kernel": (6, 8, 1, 4, 2, "same", 1),
}
FORCED = {
    "parts": {"path": "parts", "plane_grad": False, "channel_block": 1},
    "parts-plane-block8": {"path": "parts", "plane_grad": True, "channel_block": 8},
    "parts-block16": {"path": "parts", "plane_grad": False, "channel_block": 16},
    "dense": {"path": "dense"},
    "slices": {"path": "slices"},
}


class Spies:
    """Counts which implementation ran: depthwise slices, plane gradient, zero-filled kernel."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = {"slices": 0, "plane": 0, "dense": 0}
        for name, owner, attr in (
            ("slices", acs_conv.DepthwiseSlices, "apply"),
            ("plane", acs_conv.PlaneConv, "apply"),
            ("dense", acs_conv, "acs_kernel_3d"),
        ):
            original = getattr(owner, attr)
            monkeypatch.setattr(owner, attr, self._counting(name, original))

    def _counting(self, name: str, original):
        def call(*args, **kwargs):
            self.calls[name] += 1
            return original(*args, **kwargs)

        return call

    def take(self) -> dict[str, int]:
        calls, self.calls = self.calls, dict.fromkeys(self.calls, 0)
        return calls


def _force(choice: dict) -> dict:
    """acs_paths keywords putting every CPU situation on ``choice['path']``."""
    extra = {k: v for k, v in choice.items() if k != "path"}
    return {**dict.fromkeys(SITUATIONS, choice["path"]), **extra}


@pytest.mark.parametrize("choice", FORCED.values(), ids=FORCED.keys())
@pytest.mark.parametrize("layer", LAYERS.values(), ids=LAYERS.keys())
def test_every_forced_path_matches_reference(layer: tuple, choice: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward (no gradients) and forward + input/weight/bias gradients, both memory formats,
    float64: the forced implementation runs and equals conv3d with the zero-filled kernel."""
    c_in, c_out, groups, k, stride, padding, dilation = layer
    spies = Spies(monkeypatch)
    torch.manual_seed(0)
    weight = torch.randn(c_out, c_in // groups, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    shape = LayerShape(c_in, c_out, k, groups)
    depthwise = shape.depthwise
    with acs_paths(**_force(choice)):
        effective = chosen_paths(shape)  # unforced fields (plane_grad) follow this CPU's rules
        for fmt_name, fmt in FORMATS.items():
            x = torch.randn(2, c_in, 11, 10, 9, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
            expected = reference_acs_conv(x, weight, bias, stride, padding, dilation, groups)
            with torch.no_grad():
                out = acs_conv3d(x, weight, bias, stride, padding, dilation, groups)
            torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10, msg=f"forward {fmt_name}")
            inference = spies.take()
            probe = torch.randn_like(expected)
            want = torch.autograd.grad((expected * probe).sum(), (x, weight, bias))
            out = acs_conv3d(x, weight, bias, stride, padding, dilation, groups)
            have = torch.autograd.grad((out * probe).sum(), (x, weight, bias))
            for name, g, w in zip(("input", "weight", "bias"), have, want):
                torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=f"{name} gradient {fmt_name}")
            training = spies.take()
            for calls in (inference, training):
                assert calls["slices"] == (choice["path"] == "slices" and depthwise)
                assert calls["dense"] == (choice["path"] == "dense")
            assert inference["plane"] == 0
            plane = effective.plane_grad and fmt_name == "NCDHW" and effective.cpu_train == "parts"
            assert (training["plane"] > 0) == bool(plane)


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["dense", "parts"])
def test_forced_cuda_paths_match_reference(path: str) -> None:
    x = torch.randn(2, 16, 13, 12, 11, device="cuda", dtype=torch.float64, requires_grad=True)
    for c_out, groups in ((26, 1), (16, 16)):
        weight = torch.randn(c_out, 16 // groups, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
        with acs_paths(cuda=path):
            out = acs_conv3d(x, weight, None, 2, "same", 1, groups)
        expected = reference_acs_conv(x, weight, None, 2, "same", 1, groups)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        probe = torch.randn_like(out)
        have = torch.autograd.grad((out * probe).sum(), (x, weight))
        want = torch.autograd.grad((expected * probe).sum(), (x, weight))
        for g, w in zip(have, want):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


def test_layers_keep_the_paths_they_were_built_with(monkeypatch: pytest.MonkeyPatch) -> None:
    spies = Spies(monkeypatch)
    with acs_paths(cpu_train="dense", plane_grad=False):
        forced = ACSConv3d(16, 64, 3, padding=1)
    plain = ACSConv3d(16, 64, 3, padding=1)
    assert forced.paths.cpu_train == "dense" and not forced.paths.plane_grad
    assert plain.paths == chosen_paths(layer_shape(plain)) == rule_paths(layer_shape(plain), cpu_kind())
    x = torch.randn(1, 16, 6, 7, 8, requires_grad=True)
    forced(x).sum().backward()  # outside the context: the layer's own choice
    assert spies.take()["dense"] == 1


def test_explicit_paths_win_over_the_context(monkeypatch: pytest.MonkeyPatch) -> None:
    spies = Spies(monkeypatch)
    x = torch.randn(1, 16, 6, 7, 8)
    weight = torch.randn(32, 16, 3, 3)
    with acs_paths(cpu_infer="dense"), torch.no_grad():
        acs_conv3d(x, weight, None, 1, 1, paths=ACSPaths(cpu_infer="parts"))
        assert spies.take()["dense"] == 0
        acs_conv3d(x, weight, None, 1, 1)
        assert spies.take()["dense"] == 1


def _small_model() -> nn.Module:
    return nn.Sequential(
        ACSConv3d(4, 32, 3, stride=2, padding="same"),  # few inputs
        nn.BatchNorm3d(32),
        ACSConv3d(32, 32, 3, padding=1, groups=32),  # depthwise
        ACSConv3d(32, 64, 3, padding=1),
        ACSConv3d(64, 16, 3, padding=1),  # thin
        ACSConv3d(16, 8, 1),
    )


def test_configure_acs_sets_every_layer_without_running_the_model() -> None:
    model = _small_model()
    layers = [m for m in model.modules() if isinstance(m, ACSConv3d)]
    for m in layers:
        m.paths = ACSPaths(cpu_train="parts", cpu_infer_cl="parts", plane_grad=True, channel_block=3)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    assert configure_acs(model, "cpu", training=True) is model
    assert not calls  # no forward pass without measure
    for m in layers:
        assert m.paths == rule_paths(layer_shape(m), cpu_kind())
    with acs_paths(cpu_infer_cl="parts", channel_block=8):
        configure_acs(model, torch.device("cpu"), training=False)
    assert all(m.paths.cpu_infer_cl == "parts" and m.paths.channel_block == 8 for m in layers)
    configure_acs(model, "cpu", training=False)  # outside the context: the rules again
    assert all(m.paths == rule_paths(layer_shape(m), cpu_kind()) for m in layers)


def test_rule_table_on_each_cpu_kind() -> None:
    """The module docstring's table, row by row (AVX2: the Zen 1 rules; AVX-512: Zen 4+)."""

    def rules(c_in: int, c_out: int, k: int = 3, groups: int = 1, kind: str = "avx2") -> tuple:
        p = rule_paths(LayerShape(c_in, c_out, k, groups), kind)
        return (p.cpu_train, p.cpu_train_cl, p.cpu_infer, p.cpu_infer_cl, p.plane_grad, p.channel_block, p.cuda)

    assert rules(4, 32) == ("dense", "dense", "parts", "dense", True, 8, "dense")  # stem
    assert rules(4, 32, kind="avx512") == ("dense", "dense", "dense", "dense", False, 1, "dense")
    assert rules(4, 64, k=7) == ("parts", "parts", "parts", "parts", True, 8, "dense")  # 7x7 stem
    assert rules(48, 16) == ("parts", "parts", "parts", "parts", True, 8, "dense")
    assert rules(48, 16, kind="avx512") == ("dense", "dense", "dense", "dense", False, 1, "dense")
    assert rules(88, 32, kind="avx512") == ("dense", "parts", "parts", "parts", False, 1, "dense")
    assert rules(64, 64) == ("parts", "parts", "parts", "parts", True, 8, "dense")
    assert rules(64, 64, kind="avx512") == ("parts", "parts", "parts", "parts", False, 1, "dense")
    for kind in ("avx2", "avx512"):
        assert rules(96, 96, groups=96, kind=kind)[:4] == ("slices", "slices", "slices", "dense")
        assert rules(240, 240, k=5, groups=240, kind=kind)[:4] == ("slices", "parts", "slices", "parts")
        assert rules(64, 64, groups=8, kind=kind)[:4] == ("parts",) * 4  # grouped, not depthwise


def test_slices_fall_back_to_parts_off_depthwise_layers() -> None:
    with acs_paths(cpu_train="slices"):
        assert ACSConv3d(8, 8, 3, groups=8).paths.cpu_train == "slices"
        assert ACSConv3d(8, 16, 3).paths.cpu_train == "parts"


def test_context_restores_on_exit_and_on_exceptions() -> None:
    assert forced_paths() == {}
    with acs_paths(plane_grad=False):
        with acs_paths(cpu_train="dense"):
            assert forced_paths() == {"plane_grad": False, "cpu_train": "dense"}
        assert forced_paths() == {"plane_grad": False}
        with pytest.raises(KeyError), acs_paths(cpu_infer="dense"):
            raise KeyError("boom")
        assert forced_paths() == {"plane_grad": False}
    assert forced_paths() == {}
    with pytest.raises(TypeError, match="unknown"), acs_paths(plane_gradient=True):
        pass
    for bad in ({"cpu_train": "fast"}, {"channel_block": 0}, {"cuda": "slices"}):
        with pytest.raises(ValueError), acs_paths(**bad):
            pass
    assert forced_paths() == {}


def test_context_is_per_thread() -> None:
    inside, release, seen = threading.Event(), threading.Event(), {}

    def worker() -> None:
        with acs_paths(cpu_train="dense"):
            seen["worker"] = forced_paths()
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    seen["main"] = forced_paths()
    release.set()
    thread.join(10)
    assert seen == {"worker": {"cpu_train": "dense"}, "main": {}}


def test_no_module_level_path_flag_anywhere() -> None:
    """Paths are never chosen by assigning module attributes (benchmarks and tests included)."""
    for name in ("_CUDA_DENSE", "_CPU_PLANE_GRAD", "_CPU_CHANNEL_BLOCK", "_DENSE_MAX_K", "_DENSE_MAX_IN_CHANNELS"):
        assert not hasattr(acs_conv, name)
    assignment = re.compile(r"\bacs_(conv|paths|depthwise|plane)\.[A-Za-z_]\w*\s*=[^=]")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("napari_acs", "benchmarks", "tests")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if assignment.search(line)
    ]
    assert offenders == []


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NAPARI_ACS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(acs_measure, "_MEMORY", {})
    return tmp_path / acs_measure.CACHE_FILE


def test_measure_chooses_a_valid_path_and_caches_it(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _small_model().train()
    bn = model[1]
    stats = bn.running_mean.clone()
    configure_acs(model, "cpu", training=True, measure=True, input_shape=(1, 4, 12, 12, 12))
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert torch.equal(bn.running_mean, stats)  # the probe did not update batch norm
    layers = [m for m in model.modules() if isinstance(m, ACSConv3d)]
    for m in layers:
        allowed = {"parts", "dense", "slices"} if layer_shape(m).depthwise else {"parts", "dense"}
        assert m.paths.cpu_train in allowed
    data = json.loads(cache.read_text())
    assert data["version"] == acs_measure.CACHE_VERSION
    assert len(data["paths"]) == 4 and all(cpu_model() in key for key in data["paths"])  # the k > 1 layers
    chosen = [m.paths for m in layers]

    def no_timing(*args):
        raise AssertionError("measured again")

    monkeypatch.setattr(acs_measure, "_fastest", no_timing)
    monkeypatch.setattr(acs_measure, "_MEMORY", {})  # a new process: read back from disk
    configure_acs(model, "cpu", training=True, measure=True, input_shape=(1, 4, 12, 12, 12))
    assert [m.paths for m in layers] == chosen


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 999, "paths": {}}), "[]"])
def test_measure_ignores_an_unreadable_cache(cache: Path, content: str) -> None:
    cache.write_text(content)
    model = nn.Sequential(ACSConv3d(4, 8, 3, padding=1))
    configure_acs(model, "cpu", training=False, measure=True, input_shape=(1, 4, 8, 8, 8))
    data = json.loads(cache.read_text())  # replaced by a valid file of this version
    assert data["version"] == acs_measure.CACHE_VERSION and len(data["paths"]) == 1
    assert not list(cache.parent.glob(".acs_paths_*"))  # no temporary file left


def test_measure_without_disk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAPARI_ACS_CACHE_DIR", "none")
    monkeypatch.setattr(acs_measure, "_MEMORY", {})
    monkeypatch.chdir(tmp_path)
    model = nn.Sequential(ACSConv3d(4, 8, 3, padding=1))
    configure_acs(model, "cpu", training=True, measure=True, input_shape=(1, 4, 8, 8, 8))
    assert acs_measure.cache_dir() is None and len(acs_measure._MEMORY) == 1
    assert list(tmp_path.iterdir()) == []
