"""Training samples drawn from the cached cohort: segmentation patches and classification volumes.

Sample ``index`` of epoch ``epoch`` is a pure function of ``(seed, epoch, index)``:
any sampler (``DistributedSampler`` splits the indices over processes), any number
of workers and a resumed run all see the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from napari_acs.io.labels import labels_to_regions
from napari_acs.training.augment import Augmentation, augment
from napari_acs.training.cohort import ClassificationCase, SegmentationCase


class _EpochSamples(Dataset):
    """``length`` samples per epoch; ``set_epoch`` chooses the epoch (call it before loading)."""

    def __init__(self, length: int, seed: int, augmentation: Augmentation | None) -> None:
        self.length = int(length)
        self.seed = int(seed)
        self.augmentation = augmentation
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _rngs(self, index: int) -> tuple[np.random.Generator, torch.Generator]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))

    def _augment(self, image: Tensor, target: Tensor | None, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
        if self.augmentation is None:
            return image, target
        return augment(image, target, gen, self.augmentation)


class SegmentationPatches(_EpochSamples):
    """Random patches: ``(image (4, *patch) float32, regions (3, *patch) float32 WT/TC/ET)``.

    A share ``foreground_fraction`` of the patches is centred on a random tumour voxel
    (nnU-Net's oversampling), the rest lie anywhere in the cached brain crop.
    """

    def __init__(
        self,
        cases: Sequence[SegmentationCase],
        patch_size: Sequence[int],
        length: int,
        *,
        seed: int,
        foreground_fraction: float,
        augmentation: Augmentation | None,
    ) -> None:
        super().__init__(length, seed, augmentation)
        if not cases:
            raise ValueError("no training cases")
        self.cases = list(cases)
        self.patch = np.array(patch_size, dtype=np.int64)
        self.foreground_fraction = float(foreground_fraction)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng, gen = self._rngs(index)
        case = self.cases[int(rng.integers(len(self.cases)))]
        shape = np.array(case.labels.shape)
        last = shape - self.patch  # cases are padded to at least the patch size
        if len(case.tumour) and rng.random() < self.foreground_fraction:
            centre = case.tumour[int(rng.integers(len(case.tumour)))]
            start = np.clip(centre - self.patch // 2, 0, last)
        else:
            start = np.array([int(rng.integers(0, s + 1)) for s in last])
        box = tuple(slice(int(b), int(b + p)) for b, p in zip(start, self.patch))
        image = torch.from_numpy(case.image[(slice(None), *box)].astype(np.float32))
        regions = torch.from_numpy(labels_to_regions(case.labels[box], case.convention).astype(np.float32))
        image, regions = self._augment(image, regions, gen)
        return image.contiguous(), regions.contiguous()


class ClassificationSamples(_EpochSamples):
    """Subjects in a fresh random order each epoch: ``(image (4, *size) float32, label (1,) float32)``."""

    def __init__(
        self, cases: Sequence[ClassificationCase], length: int, *, seed: int, augmentation: Augmentation | None
    ) -> None:
        super().__init__(length, seed, augmentation)
        if not cases:
            raise ValueError("no training cases")
        self.cases = list(cases)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.cases))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        _, gen = self._rngs(index)
        case = self.cases[int(self.order[index % len(self.cases)])]
        image, _ = self._augment(torch.from_numpy(case.image.astype(np.float32)), None, gen)
        return image.contiguous(), torch.tensor([float(case.label)])
