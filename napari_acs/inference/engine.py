"""Inference engines that own their network: :class:`Segmenter` and :class:`Classifier`.

In the manner of nnU-Net v2's ``nnUNetPredictor`` and timm's ``reparameterize_model``,
an engine is built once from a checkpoint or a model and prepares a *private* copy of
the network: eval mode, no gradients, on its device, batch norm folded into the
convolutions (one way), native conv3d weights channels-last on the CPU, and the ACS
operator's paths fixed for that device. The caller's model is never changed (not its
weights, device, ``training`` flag nor ``forward``); a GPU out-of-memory fallback moves
only the engine's copy to the CPU. Widgets, the CLI and training validation each hold
their own engine.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from napari_acs.inference.device import resolve_device
from napari_acs.inference.preprocess import brain_crop, classification_input, model_input_size, model_patch_size
from napari_acs.inference.watch import watch_layers
from napari_acs.io.labels import regions_to_labels
from napari_acs.models.acs_paths import configure_acs
from napari_acs.models.fold import fold_batchnorm
from napari_acs.models.memory_format import to_channels_last
from napari_acs.progress import CancelSignal, ProgressCallback, check_cancel, report

#: Largest window (voxels) used to cover a whole brain in one pass ("auto" roi). On the
#: CPU a whole 240 x 240 x 155 BraTS volume fits: ~2 GB peak RSS for the default preset.
AUTO_MAX_VOXELS = {"cpu": 240 * 240 * 160, "cuda": 256 * 256 * 192, "mps": 160 * 160 * 128}

ModelSource = str | Path | nn.Module


@dataclass(frozen=True)
class CasePrediction:
    """One case's segmentation with its region probabilities, on the case's canonical grid.

    Attributes:
        labels: uint8 ``(X, Y, Z)`` NCR / ED / ET labels in the case's convention.
        cropped: float32 ``(R, x, y, z)`` WT / TC / ET probabilities inside ``box`` (0 outside the brain).
        box: the brain's bounding box in ``labels`` (where the network ran).
        threshold: probability above which a region was labelled.
        votes: uint8 ``(R, x, y, z)``: for how many of the ``flips`` mirror flips each region's
            probability reached ``threshold`` (test-time augmentation; 0 or 1 without).
        flips: how many flips were averaged (8 with ``tta``, else 1).
    """

    labels: np.ndarray
    cropped: np.ndarray
    box: tuple[slice, ...]
    threshold: float
    votes: np.ndarray
    flips: int

    @property
    def probabilities(self) -> np.ndarray:
        """float32 ``(R, X, Y, Z)`` region probabilities, 0 outside the brain's box."""
        full = np.zeros((self.cropped.shape[0], *self.labels.shape), dtype=np.float32)
        full[(slice(None), *self.box)] = self.cropped
        return full

    @property
    def uncertainty(self) -> np.ndarray:
        """float32 ``(X, Y, Z)`` voxel uncertainty in ``[0, 1]`` (:func:`~napari_acs.inference.uncertainty.voxel_uncertainty`)."""
        from napari_acs.inference.uncertainty import voxel_uncertainty

        full = np.zeros(self.labels.shape, dtype=np.float32)
        full[self.box] = voxel_uncertainty(self.cropped, self.votes, self.flips)
        return full

    @property
    def score(self) -> float:
        """Review priority in ``[0, 1]`` (:func:`~napari_acs.inference.uncertainty.case_score`)."""
        from napari_acs.inference.uncertainty import case_score

        return case_score(self.cropped, self.votes, self.flips, self.threshold)


def _load(path_or_model: ModelSource) -> tuple[nn.Module, bool]:
    """The model and whether it is the caller's (then it must be copied, never changed)."""
    if isinstance(path_or_model, nn.Module):
        return path_or_model, True
    from napari_acs.models.checkpoint import load_model

    return load_model(path_or_model), False


class _Engine:
    """What both engines share: the private, prepared network and its device."""

    task = "segmentation"

    def __init__(self, model: nn.Module, *, device: str | torch.device = "auto", amp: bool = True,
                 _owned: bool = False) -> None:
        given = (getattr(model, "create_kwargs", None) or {}).get("task", self.task)
        if given != self.task:
            raise ValueError(f"a {given} model cannot be used for {self.task}: choose a {self.task} checkpoint")
        self.device = resolve_device(device)
        self.amp = amp
        #: The source model's metadata (a checkpoint's ``checkpoint_meta``, ``preset``, ``create_kwargs``).
        self.meta: dict = dict(getattr(model, "checkpoint_meta", None) or {})
        self.network = self._prepare(model if _owned else copy.deepcopy(model), self.device)

    @classmethod
    def from_checkpoint(cls, path_or_model: ModelSource, **kwargs):
        """An engine for a napari-acs checkpoint file, or for a model (which it copies)."""
        model, callers = _load(path_or_model)
        return cls(model, _owned=not callers, **kwargs)

    @staticmethod
    def _prepare(net: nn.Module, device: torch.device) -> nn.Module:
        net.eval().requires_grad_(False).to(device)
        net = fold_batchnorm(net, inplace=True)
        if device.type == "cpu":  # channels-last-3d: measured faster for ACS and 3D on CPU
            to_channels_last(net)
        configure_acs(net, device, training=False)
        return net

    def _move_to_cpu(self) -> None:
        """After a GPU out-of-memory: the engine's own copy continues on the CPU."""
        self.device = torch.device("cpu")
        self.network = self._prepare(self.network, self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp and self.device.type == "cuda")


class Segmenter(_Engine):
    """Segmentation engine: region probabilities and BraTS labels for images and cases.

    Args:
        model: a segmentation network (copied) — or use :meth:`from_checkpoint`.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``...
        tta: average over the 8 mirror flips (as nnU-Net does); 8x the time.
        amp: float16 autocast on CUDA.
        roi_size: window size in voxels, or ``"auto"`` (the whole cropped brain in one
            window when it fits the device's budget, otherwise the model's patch size).
        overlap, sw_batch_size: MONAI sliding-window settings when several windows are needed.
        threshold: probability above which a region is labelled.
    """

    def __init__(self, model: nn.Module, *, device: str | torch.device = "auto", tta: bool = False,
                 amp: bool = True, roi_size: Sequence[int] | Literal["auto"] = "auto", overlap: float = 0.5,
                 sw_batch_size: int = 1, threshold: float = 0.5, _owned: bool = False) -> None:
        self.patch_size = model_patch_size(model)
        super().__init__(model, device=device, amp=amp, _owned=_owned)
        self.tta = tta
        self.roi_size = roi_size
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.threshold = threshold

    @property
    def flips(self) -> list[tuple[int, ...]]:
        """The mirror flips averaged (tensor axes of ``(N, C, X, Y, Z)``): none, or all 8 with ``tta``."""
        return [f for n in range(4) for f in itertools.combinations((2, 3, 4), n)] if self.tta else [()]

    # ------------------------------------------------------------------ arrays
    def predict_regions(self, image: np.ndarray, *, progress: ProgressCallback | None = None,
                        cancel: CancelSignal = None) -> np.ndarray:
        """Region probabilities of a normalised image.

        Args:
            image: float32 ``(C, X, Y, Z)``, already normalised (see :func:`brain_crop`).
            progress: ``(fraction, message)``, several times a second, also inside a window.
            cancel: checked before every layer: stops within a layer's time.

        Returns:
            float32 ``(num_classes, X, Y, Z)`` sigmoid probabilities.
        """
        return self._regions(image, progress, cancel)[0]

    def _regions(self, image: np.ndarray, progress: ProgressCallback | None,
                 cancel: CancelSignal) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (mean logit over the flips) and uint8 votes: for how many flips each
        region's own probability reached the threshold."""
        with torch.inference_mode():
            try:
                probs, votes = self._predict(image, self.device, self.sw_batch_size, progress, cancel)
            except torch.OutOfMemoryError:
                if self.device.type != "cuda":
                    raise
                probs, votes = self._retry_after_oom(image, progress, cancel)
        return probs.cpu().numpy(), votes.cpu().numpy()

    def _roi(self, shape: Sequence[int], device: torch.device) -> tuple[int, ...]:
        if self.roi_size != "auto":
            return tuple(int(r) for r in self.roi_size)
        # One window of exactly the (cropped) brain's size when it fits the budget: the
        # networks take any size (the decoder resizes to each skip), so no padding to the
        # encoder's stride (same Dice as padding to 32 on the sample cases, a third less work).
        if math.prod(shape) <= AUTO_MAX_VOXELS.get(device.type, AUTO_MAX_VOXELS["cpu"]):
            return tuple(int(s) for s in shape)
        return tuple(int(p) for p in self.patch_size)

    def _predict(self, image: np.ndarray, stitch: torch.device, batch: int, progress: ProgressCallback | None,
                 cancel: CancelSignal) -> tuple[torch.Tensor, torch.Tensor]:
        net, target = self.network, self.device
        shape = image.shape[1:]
        roi = self._roi(shape, target)
        flips = self.flips
        total = _window_count(shape, roi, self.overlap) * len(flips)
        done = 0

        def within(fraction: float) -> None:
            report(progress, (done + fraction) / total, f"window {done + 1}/{total}")

        def run(window: torch.Tensor) -> torch.Tensor:
            nonlocal done
            check_cancel(cancel, "segmentation")
            if window.device.type == "cpu":
                window = window.contiguous(memory_format=torch.channels_last_3d)
            with self._autocast():
                out = net(window)
            done += window.shape[0]
            report(progress, done / total, f"window {done}/{total}")
            return out.float()

        x = torch.from_numpy(np.ascontiguousarray(image))[None]
        logits = votes = None
        cut = math.log(self.threshold / (1 - self.threshold)) if 0 < self.threshold < 1 else 0.0
        with watch_layers(net, cancel, "segmentation", within):
            for flip in flips:
                xi = torch.flip(x, flip) if flip else x
                if tuple(roi) == tuple(shape):  # one window: Gaussian blending would divide itself out
                    y = run(xi.to(target)).to(stitch)
                else:
                    # imported here: MONAI takes ~2.5 s to import and one-window cases never need it
                    from monai.inferers import sliding_window_inference

                    y = sliding_window_inference(xi, roi, batch, run, overlap=self.overlap, mode="gaussian",
                                                 sw_device=target, device=stitch)
                y = torch.flip(y, flip) if flip else y
                vote = (y[0] >= cut).to(torch.uint8)  # sigmoid(y) >= threshold
                logits = y if logits is None else logits + y
                votes = vote if votes is None else votes + vote
        return torch.sigmoid(logits[0] / len(flips)), votes

    def _retry_after_oom(self, image: np.ndarray, progress: ProgressCallback | None,
                         cancel: CancelSignal) -> tuple[torch.Tensor, torch.Tensor]:
        """GPU ran out of memory: stitch on the CPU with batch 1, then move this engine to the CPU."""
        torch.cuda.empty_cache()
        message = "GPU out of memory: retrying with batch 1, stitching on the CPU"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        report(progress, 0.0, message)
        try:
            return self._predict(image, torch.device("cpu"), 1, progress, cancel)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            message = "GPU out of memory again: falling back to the CPU (slower)"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            report(progress, 0.0, message)
            self._move_to_cpu()
            return self._predict(image, self.device, 1, progress, cancel)

    # ------------------------------------------------------------------ cases
    def segment(self, case, *, progress: ProgressCallback | None = None, cancel: CancelSignal = None,
                space: Literal["canonical", "source"] = "canonical") -> np.ndarray:
        """Segment a :class:`~napari_acs.io.BratsCase` into NCR / ED / ET labels in its convention.

        The image is cropped to the brain's bounding box, z-scored inside the brain,
        predicted as WT/TC/ET regions, kept inside the brain mask, made consistent
        (ET inside TC inside WT) and written back into a full-size label map.

        A sequence missing from the case (``case.missing``, files assigned by the user) is an
        all-zero input channel (it stays zero after the z-score: what a network trained with
        modality dropout sees for an absent sequence). The models trained on all four
        sequences are then less reliable: ``progress`` says so first.

        Args:
            space: ``"canonical"`` (default): on the grid of ``case.image`` and
                ``case.label`` (RAS+), so it compares with ``case.label`` directly and
                ``save_segmentation`` writes it back on the source grid; ``"source"``:
                the source file's voxel order (what nibabel reads from the input files).

        Returns:
            uint8 label map ``(X, Y, Z)``.
        """
        prediction = self.predict_case(case, progress=progress, cancel=cancel)
        return case.source.to_source(prediction.labels) if space == "source" else prediction.labels

    def predict_case(self, case, *, progress: ProgressCallback | None = None,
                     cancel: CancelSignal = None) -> CasePrediction:
        """What :meth:`segment` computes, with the region probabilities kept (canonical grid):
        for the uncertainty map and score (:mod:`napari_acs.inference.uncertainty`) and for
        saving probabilities. Progress and cancel as in :meth:`segment`."""
        missing = tuple(getattr(case, "missing", ()))
        if missing:
            from napari_acs.io.sequences import missing_warning

            report(progress, 0.0, f"preparing {case.case_id}: {missing_warning(missing)}")
        else:
            report(progress, 0.0, f"preparing {case.case_id}")
        box, image, brain = brain_crop(case.image)
        check_cancel(cancel, "segmentation")
        probs, votes = self._regions(image, progress, cancel)
        probs *= brain  # BraTS images are skull-stripped: no tumour outside the brain
        votes *= brain
        labels = np.zeros(case.image.shape[1:], dtype=np.uint8)
        labels[box] = regions_to_labels(probs >= self.threshold, case.convention)
        report(progress, 1.0, f"segmented {case.case_id}")
        return CasePrediction(labels, probs, box, self.threshold, votes, len(self.flips))


    def segment_cohort(self, inputs: Sequence[str | Path], out_dir: str | Path, **kwargs):
        """Segment every case of ``inputs`` into ``out_dir`` with this engine; see
        :func:`napari_acs.inference.batch.segment_cases` (``overwrite``, ``progress``, ``cancel``...)."""
        from napari_acs.inference.batch import segment_cases

        return segment_cases(inputs, out_dir, self, **kwargs)


class Classifier(_Engine):
    """MGMT classification engine: the probability that a case is positive (methylated)."""

    task = "classification"

    def __init__(self, model: nn.Module, *, device: str | torch.device = "auto", _owned: bool = False) -> None:
        self.input_size = model_input_size(model)
        super().__init__(model, device=device, amp=False, _owned=_owned)

    def classify(self, case, *, cancel: CancelSignal = None) -> float:
        """Sigmoid of the first logit, the input prepared as in training
        (:func:`~napari_acs.inference.preprocess.classification_input` at the checkpoint's
        ``input_size``); ``cancel`` is checked before every layer."""
        x = torch.from_numpy(classification_input(case.image, self.input_size))[None].to(self.device)
        with torch.inference_mode(), watch_layers(self.network, cancel, "classification"):
            logit = self.network(x).float()[0, 0]
        return float(torch.sigmoid(logit))


def _window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window visits (after its padding)."""
    count = 1
    for s, r in zip(shape, roi):
        s = max(s, r)
        interval = max(int(r * (1 - overlap)), 1)
        count *= 1 if s <= r else int(math.ceil((s - r) / interval)) + 1
    return count
