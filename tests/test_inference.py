"""Whole-case inference: the pipeline maps predictions back exactly; progress and cancel work."""

from __future__ import annotations

import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from napari_acs.inference import Cancelled, predict_regions, resolve_device, segment
from napari_acs.io import load_case, save_segmentation
from napari_acs.metrics import brats_metrics
from nifti_cases import AFFINES, write_case


class OracleFromChannel(nn.Module):
    """A fixed model: region logits from thresholds on one input channel (no learning)."""

    def __init__(self, channel: int, thresholds: tuple[float, float, float]) -> None:
        super().__init__()
        self.channel = channel
        self.register_buffer("thresholds", torch.tensor(thresholds).view(1, 3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, self.channel : self.channel + 1] - self.thresholds)


def write_tumour_case(folder: Path, affine: np.ndarray, convention: str = "brats2021") -> Path:
    """A small case whose FLAIR encodes its labels: WT > 1.0, TC > 2.0, ET > 3.0 after z-scoring."""
    files = write_case(folder, affine=affine, shape=(40, 36, 30), convention=convention)
    ref = np.asarray(nib.load(files["seg"]).dataobj)
    ref[:] = 0
    grid = np.indices(ref.shape)
    r = np.sqrt(((grid - np.array([22, 16, 14])[:, None, None, None]) ** 2).sum(0))
    conv = load_case(folder).convention
    from napari_acs.io import get_convention

    c = get_convention(conv)
    ref[r < 9] = c.ed
    ref[r < 6] = c.ncr
    ref[(r >= 4) & (r < 6)] = c.et
    nib.save(nib.Nifti1Image(ref, affine), files["seg"])
    flair_key = "flair" if convention == "brats2021" else "t2f"
    flair = np.asarray(nib.load(files[flair_key]).dataobj).astype(np.int16)
    brain = flair > 0
    flair[brain] = 1000
    flair[ref == c.ed] = 1600
    flair[ref == c.ncr] = 2200
    flair[ref == c.et] = 2800
    nib.save(nib.Nifti1Image(flair, affine), files[flair_key])
    return folder


def oracle_for(case) -> OracleFromChannel:
    """Thresholds halfway between the z-scored FLAIR levels of the classes."""
    from napari_acs.io import brain_mask, zscore_in_mask

    z = zscore_in_mask(case.image)[3][brain_mask(case.image)]
    levels = np.unique(np.round(z, 3))
    mids = (levels[:-1] + levels[1:]) / 2  # background-brain / ED / NCR / ET boundaries
    # WT = above the first boundary, TC = above ED (NCR or ET), ET = above NCR
    return OracleFromChannel(3, (float(mids[0]), float(mids[1]), float(mids[2])))


@pytest.mark.parametrize("geometry,convention", [("LPS", "brats2021"), ("oblique", "brats2023")])
def test_segment_maps_regions_back_exactly(tmp_path: Path, geometry: str, convention: str) -> None:
    folder = write_tumour_case(tmp_path / "case", AFFINES[geometry], convention)
    case = load_case(folder)
    model = oracle_for(case)
    labels = segment(case, model, device="cpu", roi_size=(32, 32, 32), overlap=0.25)
    assert labels.dtype == np.uint8 and labels.shape == case.shape
    assert np.array_equal(labels, case.label)
    metrics = brats_metrics(labels, case.label, case.spacing, convention=case.convention)
    assert all(m["dice"] == 1.0 for m in metrics.values())
    # on the source grid it equals the file on disk, and save_segmentation writes it back
    source = segment(case, model, device="cpu", space="source")
    assert np.array_equal(source, np.asarray(nib.load(case.files["seg"]).dataobj))
    out = save_segmentation(labels, case, tmp_path / "pred_seg.nii.gz")
    assert np.array_equal(np.asarray(nib.load(out).dataobj), source)


def test_mirror_tta_of_a_symmetric_model_changes_nothing(tmp_path: Path) -> None:
    case = load_case(write_tumour_case(tmp_path / "case", AFFINES["RAS"]))
    model = oracle_for(case)
    assert np.array_equal(segment(case, model, device="cpu", tta=True), case.label)


def test_progress_is_steady_and_cancel_stops(tmp_path: Path) -> None:
    from napari_acs.models import create_model

    case = load_case(write_tumour_case(tmp_path / "case", AFFINES["LPS"]))
    model = create_model("tf_efficientnet_lite0", conv="acs", pretrained=False)
    calls: list[float] = []
    labels = segment(case, model, device="cpu", roi_size=(32, 32, 32), overlap=0.5,
                     progress=lambda f, m: calls.append(f))
    assert labels.shape == case.shape
    assert len(calls) >= 5 and calls == sorted(calls) and calls[-1] == 1.0  # 4 windows
    assert set(np.unique(labels)) <= {0, 1, 2, 4}

    cancel = threading.Event()
    seen: list[float] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(fraction)
        if len(seen) == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        segment(case, model, device="cpu", roi_size=(32, 32, 32), progress=progress, cancel=cancel)
    assert len(seen) <= 4  # stopped at the next window


def test_predict_regions_auto_window_covers_the_image_once(monkeypatch) -> None:
    from napari_acs.inference import watch
    from napari_acs.models import create_model

    monkeypatch.setattr(watch, "TICK_SECONDS", 0.0)  # report at every layer
    model = create_model("mobilenetv2_100", conv="acs", pretrained=False)
    image = np.random.default_rng(0).normal(size=(4, 45, 50, 37)).astype(np.float32)
    calls: list[tuple[float, str]] = []
    probs = predict_regions(image, model, device="cpu", progress=lambda f, m: calls.append((f, m)))
    assert probs.shape == (3, 45, 50, 37) and probs.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    # one window of the image's own size, progress reported layer by layer inside it
    assert {m for _, m in calls} == {"window 1/1"}
    fractions = [f for f, _ in calls]
    assert len(fractions) > 20 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({round(f, 2) for f in fractions if f < 1.0}) > 10


def test_cancel_stops_inside_a_whole_brain_window(monkeypatch) -> None:
    from napari_acs.inference import watch
    from napari_acs.models import create_model

    monkeypatch.setattr(watch, "TICK_SECONDS", 0.0)
    model = create_model("mobilenetv2_100", conv="acs", pretrained=False)
    image = np.random.default_rng(0).normal(size=(4, 45, 50, 37)).astype(np.float32)
    cancel = threading.Event()
    seen: list[float] = []

    def progress(fraction: float, message: str) -> None:
        seen.append(fraction)
        if len(seen) == 5:
            cancel.set()

    with pytest.raises(Cancelled, match="segmentation cancelled"):
        predict_regions(image, model, device="cpu", progress=progress, cancel=cancel)
    assert len(seen) == 5 and seen[-1] < 0.5  # stopped at the next layer of the only window
    hooks = [m for m in model.modules() if m._forward_pre_hooks or m._forward_hooks]
    assert hooks == []  # the watch removed its hooks


def test_resolve_device() -> None:
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_amp_segmentation_matches_cpu() -> None:
    """The demo model on a whole sample case: float16 on the GPU gives the CPU's labels."""
    from napari_acs.io.sample import sample_case_path
    from napari_acs.models import load_model
    from napari_acs.models.select import demo_checkpoint_path

    case = load_case(sample_case_path())
    model = load_model(demo_checkpoint_path())
    cpu = segment(case, model, device="cpu", amp=False)
    seen: list[str] = []
    gpu = segment(case, model, progress=lambda f, m: seen.append(m))  # device="auto" picks CUDA
    assert not next(model.parameters()).is_cuda and seen[-1].startswith("segmented")  # the engine moved its copy
    agreement = brats_metrics(gpu, cpu, case.spacing, convention=case.convention)
    assert all(agreement[r]["dice"] > 0.99 for r in ("WT", "TC", "ET"))
    ref = brats_metrics(gpu, case.label, case.spacing, convention=case.convention)
    assert ref["WT"]["dice"] > 0.8


@pytest.mark.gpu
def test_cuda_mgmt_classification_matches_cpu() -> None:
    from napari_acs.inference import classify
    from napari_acs.io.sample import sample_case_path
    from napari_acs.models import create_model

    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", conv="acs", task="classification", pretrained=False)
    case = load_case(sample_case_path())
    cpu = classify(case, model, device="cpu")
    gpu = classify(case, model, device="cuda")
    assert not next(model.parameters()).is_cuda and 0 < gpu < 1  # the caller's model stays where it was
    assert abs(cpu - gpu) < 0.01  # float32 on both; cuDNN may use TF32 convolutions


@pytest.mark.gpu
def test_cuda_out_of_memory_retries_then_falls_back_to_cpu() -> None:
    """A real out-of-memory (GPU capped below one window's needs): batch-1 retry, then CPU, with warnings."""
    from napari_acs.models import create_model

    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", conv="acs", pretrained=False)
    image = np.random.default_rng(0).standard_normal((4, 96, 96, 80)).astype(np.float32)
    expected = predict_regions(image, model, device="cpu", amp=False)
    messages: list[str] = []
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(64 * 2**20 / free)  # the weights fit, activations do not
    try:
        with pytest.warns(RuntimeWarning, match="GPU out of memory") as warned:
            probs = predict_regions(image, model, device="cuda", progress=lambda f, m: messages.append(m))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert [str(w.message) for w in warned if "GPU" in str(w.message)] == [
        "GPU out of memory: retrying with batch 1, stitching on the CPU",
        "GPU out of memory again: falling back to the CPU (slower)",
    ]
    assert any("falling back to the CPU" in m for m in messages)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.gpu
def test_out_of_memory_fallback_moves_only_the_engines_copy() -> None:
    """The caller's model, on the GPU, is where and as it was after the engine fell back to the CPU."""
    from napari_acs.inference import Segmenter
    from napari_acs.models import create_model
    from test_engine import model_state

    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", conv="acs", pretrained=False).cuda().train()
    before = model_state(model)
    engine = Segmenter(model, device="cuda")
    image = np.random.default_rng(0).standard_normal((4, 96, 96, 80)).astype(np.float32)
    torch.cuda.empty_cache()
    free = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(256 * 2**20 / free)  # the two copies fit, activations do not
    try:
        with pytest.warns(RuntimeWarning, match="GPU out of memory"):
            engine.predict_regions(image)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert engine.device.type == "cpu" and next(engine.network.parameters()).device.type == "cpu"
    assert model_state(model) == before
