"""Safe checkpoints: exact round trips, no overwrite, atomic writes, no unpickling, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from napari_acs.models.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

META = {"label_convention": "brats2021", "normalisation": "zscore_brain",
        "patch_size": [16, 16, 16], "model_card": "tiny test model; research use only"}


class TinyNet(nn.Module):
    """A 3D conv net with BatchNorm statistics, tied weights and a non-contiguous parameter."""

    def __init__(self, width: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU()
        )
        self.head = nn.Linear(width, width)
        self.tail = nn.Linear(width, width)
        self.tail.weight = self.head.weight  # shared storage: safetensors refuses it as is
        self.proj = nn.Parameter(torch.randn(2, width).t())  # non-contiguous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, X, Y, Z)`` -> ``(N, 2)``."""
        pooled = self.features(x).mean(dim=(2, 3, 4))
        return self.tail(self.head(pooled)) @ self.proj


def tiny_net(*, width: int, in_channels: int) -> TinyNet:
    """Builder with the ``create_model`` contract: sets ``create_kwargs``."""
    model = TinyNet(width, in_channels)
    model.create_kwargs = {"width": width, "in_channels": in_channels}
    return model


@pytest.fixture
def trained() -> TinyNet:
    torch.manual_seed(0)
    model = tiny_net(width=6, in_channels=4)
    model.train()
    model(torch.randn(2, 4, 8, 8, 8))  # non-trivial BatchNorm running statistics
    return model.eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 4, 9, 7, 5)


def test_round_trip_gives_identical_outputs(
    trained: TinyNet, x: torch.Tensor, tmp_path: Path
) -> None:
    path = save_checkpoint(trained, tmp_path / "model.safetensors", **META)
    loaded = load_model(path, build=tiny_net)
    assert not loaded.training
    assert torch.equal(loaded(x), trained(x))
    assert loaded.checkpoint_meta == META
    assert loaded.create_kwargs == {"width": 6, "in_channels": 4}
    state, header = load_checkpoint(path, check_schema=False)  # a custom network's own kwargs
    assert header["format_version"] == FORMAT_VERSION
    assert set(state) == set(trained.state_dict())
    assert torch.equal(state["features.1.running_var"], trained.features[1].running_var)


def test_data_parallel_wrapper_is_saved_without_its_prefix(
    trained: TinyNet, x: torch.Tensor, tmp_path: Path
) -> None:
    path = save_checkpoint(nn.DataParallel(trained), tmp_path / "dp.safetensors")
    assert torch.equal(load_model(path, build=tiny_net)(x), trained(x))


def test_existing_file_is_not_overwritten_unless_asked(trained: TinyNet, tmp_path: Path) -> None:
    path = save_checkpoint(trained, tmp_path / "model.safetensors", note="first")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="model.safetensors exists"):
        save_checkpoint(trained, path, note="second")
    assert path.read_bytes() == before
    save_checkpoint(trained, path, overwrite=True, note="second")
    assert load_checkpoint(path, check_schema=False)[1]["meta"] == {"note": "second"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp files left


def test_failed_write_leaves_nothing_behind(trained: TinyNet, tmp_path: Path) -> None:
    trained.register_buffer("unsupported", torch.zeros(2, dtype=torch.complex128))
    with pytest.raises(KeyError):  # safetensors has no complex128
        save_checkpoint(trained, tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_model_without_create_kwargs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no create_kwargs"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "model.safetensors")


def test_metadata_must_be_json(trained: TinyNet, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_checkpoint(trained, tmp_path / "model.safetensors", spacing=object())
    assert list(tmp_path.iterdir()) == []


def test_malicious_pickle_does_not_run(trained: TinyNet, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    header = {"format_version": FORMAT_VERSION, "create_model": trained.create_kwargs, "meta": {}}
    torch.save({"state_dict": trained.state_dict(), METADATA_KEY: header, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused by torch.load") as err:
        load_model(path, build=tiny_net)
    assert str(path) in str(err.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: plain unpickling runs it
    assert marker.exists()


def test_legacy_pth_with_metadata_loads(trained: TinyNet, x: torch.Tensor, tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    header = {"format_version": FORMAT_VERSION, "create_model": trained.create_kwargs, "meta": META}
    torch.save({"state_dict": trained.state_dict(), METADATA_KEY: header}, path)
    loaded = load_model(path, build=tiny_net)
    assert torch.equal(loaded(x), trained(x))
    assert loaded.checkpoint_meta == META


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_plain_state_dict_cannot_rebuild(trained: TinyNet, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"plain{suffix}"
    state = {k: v.clone().contiguous() for k, v in trained.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    with pytest.raises(CheckpointError, match="no napari-acs metadata") as err:
        load_model(path, build=tiny_net)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_file_error_names_the_file(trained: TinyNet, tmp_path: Path, suffix: str) -> None:
    good = save_checkpoint(trained, tmp_path / "good.safetensors")
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_wrong_format_version_is_refused(trained: TinyNet, tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    header = {"format_version": 2, "create_model": {}, "meta": {}}
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(CheckpointError, match="format_version 2 is not supported"):
        load_checkpoint(path)


def test_broken_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["model.ckpt", "missing.safetensors"])
def test_unknown_type_or_missing_file_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".ckpt"):
        path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_rebuilt_model(trained: TinyNet, tmp_path: Path) -> None:
    path = save_checkpoint(trained, tmp_path / "model.safetensors")

    def wider(*, width: int, in_channels: int) -> TinyNet:
        return tiny_net(width=width + 1, in_channels=in_channels)

    with pytest.raises(CheckpointError, match="do not fit the rebuilt model"):
        load_model(path, build=wider)
