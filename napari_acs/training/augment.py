"""Training augmentation on one sample: small affine, mirror flips, intensity scale and shift.

Written with torch (one ``grid_sample`` for the affine) and driven by a
``torch.Generator``, so a sample is a pure function of its seed: the same on any
number of data-loader workers or processes, and again after a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augmentation:
    """Random transforms and their strengths (the MONAI BraTS tutorial's, plus nnU-Net's affine).

    ``flip``: mirror each axis with probability 0.5. ``intensity_scale`` /
    ``intensity_shift``: per channel, multiply by ``1 + U(-s, s)`` and add
    ``U(-o, o)`` (z-score units). ``affine_prob``: probability of a rotation of up to
    ``rotate_degrees`` about each axis with an isotropic scaling of ``1 + U(-scale, scale)``.
    ``modality_dropout``: probability that a sample loses a random non-empty, proper subset of
    its sequences (channels set to 0, as a missing sequence is after normalisation), so the
    model learns to segment from any subset (hetero-modal training).
    """

    flip: bool = True
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    affine_prob: float = 0.2
    rotate_degrees: float = 10.0
    scale: float = 0.1
    modality_dropout: float = 0.0

    @classmethod
    def dropout_only(cls, modality_dropout: float) -> Augmentation:
        """Only the modality dropout, every other transform off."""
        return cls(flip=False, intensity_scale=0.0, intensity_shift=0.0, affine_prob=0.0,
                   modality_dropout=modality_dropout)


def _uniform(gen: torch.Generator, low: float, high: float, n: int = 1) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _rotation(angles: Tensor) -> Tensor:
    """(3, 3) rotation composed of rotations by ``angles`` (radians) about the three axes."""
    out = torch.eye(3, dtype=torch.float64)
    for axis, angle in enumerate(angles.tolist()):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rot = torch.eye(3, dtype=torch.float64)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        out = rot @ out
    return out


def random_affine(
    image: Tensor, target: Tensor | None, gen: torch.Generator, aug: Augmentation
) -> tuple[Tensor, Tensor | None]:
    """Rotate and scale about the patch centre (linear for the image, thresholded for ``target``).

    ``image`` (C, X, Y, Z) float; ``target`` (K, X, Y, Z) float 0/1 masks or ``None``.
    """
    angles = _uniform(gen, -1.0, 1.0, 3) * math.radians(aug.rotate_degrees)
    zoom = float(_uniform(gen, 1.0 - aug.scale, 1.0 + aug.scale))
    # affine_grid's coordinates run over (Z, Y, X) in [-1, 1]: rotate in voxel units
    half = torch.tensor(image.shape[1:][::-1], dtype=torch.float64) / 2
    linear = torch.diag(1 / half) @ (_rotation(angles) / zoom) @ torch.diag(half)
    theta = torch.cat([linear, torch.zeros(3, 1, dtype=torch.float64)], dim=1)[None].float()
    stack = image if target is None else torch.cat([image, target])
    grid = F.affine_grid(theta, [1, *stack.shape], align_corners=False)
    moved = F.grid_sample(stack[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if target is None:
        return moved, None
    channels = image.shape[0]
    return moved[:channels], (moved[channels:] >= 0.5).to(target.dtype)


def augment(
    image: Tensor, target: Tensor | None, gen: torch.Generator, aug: Augmentation
) -> tuple[Tensor, Tensor | None]:
    """Apply :class:`Augmentation` to ``image`` (C, X, Y, Z) and, spatially, to ``target``."""
    if aug.affine_prob > 0 and float(torch.rand(1, generator=gen)) < aug.affine_prob:
        image, target = random_affine(image, target, gen, aug)
    if aug.flip:
        axes = [axis + 1 for axis in range(3) if float(torch.rand(1, generator=gen)) < 0.5]
        if axes:
            image = torch.flip(image, axes)
            target = None if target is None else torch.flip(target, axes)
    channels = image.shape[0]
    scale = 1.0 + _uniform(gen, -aug.intensity_scale, aug.intensity_scale, channels).float()
    shift = _uniform(gen, -aug.intensity_shift, aug.intensity_shift, channels).float()
    image = image * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
    if channels > 1 and aug.modality_dropout > 0 and float(torch.rand(1, generator=gen)) < aug.modality_dropout:
        image = drop_modalities(image, gen)
    return image, target


def drop_modalities(image: Tensor, gen: torch.Generator) -> Tensor:
    """``image`` (C, X, Y, Z) with a uniformly drawn non-empty proper subset of its C channels
    set to 0 (at least one channel kept)."""
    channels = image.shape[0]
    subset = int(torch.randint(1, 2**channels - 1, (1,), generator=gen))  # bit c set: channel c dropped
    dropped = torch.tensor([bool(subset >> c & 1) for c in range(channels)])
    return image.masked_fill(dropped.view(-1, 1, 1, 1), 0.0)
