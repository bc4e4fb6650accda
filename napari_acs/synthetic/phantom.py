"""One synthetic case in memory: the posed template brain, its glioma, four contrasts, bias and noise."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_acs.io.labels import Convention, get_convention
from napari_acs.synthetic.template import Template, load_template, tissue_maps
from napari_acs.synthetic.tumour import (
    TumourFractions,
    TumourParams,
    draw_tumour,
    mass_effect,
    paint_tumour,
)

#: Field of view of a BraTS volume, mm (240 x 240 x 155 voxels of 1 mm).
BRATS_FOV_MM = (240.0, 240.0, 155.0)
BRATS_SHAPE = (240, 240, 155)

# Relative signal of each tissue class per contrast (white matter = 1), before the
# per-case jitter: T1 WM > GM > CSF; T1ce adds a bright enhancing rim; T2 CSF brightest,
# GM > WM, oedema bright; FLAIR suppresses CSF, oedema brightest. "net" is the
# non-enhancing tumour core of the cases without enhancement (labelled NCR, as in BraTS).
_CONTRAST = {
    "t1": {"gm": 0.72, "wm": 1.0, "csf": 0.28, "ed": 0.62, "ncr": 0.32, "et": 0.74, "net": 0.58},
    "t1ce": {"gm": 0.72, "wm": 1.0, "csf": 0.30, "ed": 0.62, "ncr": 0.30, "et": 1.75, "net": 0.62},
    "t2": {"gm": 1.40, "wm": 1.0, "csf": 3.20, "ed": 2.30, "ncr": 2.50, "et": 1.80, "net": 2.10},
    "flair": {"gm": 1.22, "wm": 1.0, "csf": 0.22, "ed": 2.10, "ncr": 1.30, "et": 1.60, "net": 1.70},
}
#: Range of the white-matter intensity (int16 units) of each contrast, drawn per case.
_WM_LEVEL = {"t1": (200.0, 500.0), "t1ce": (200.0, 500.0), "t2": (150.0, 400.0), "flair": (150.0, 400.0)}


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """A generated case in memory, on the BraTS grid (X, Y, Z) = ``shape``.

    ``images`` maps the BraTS 2021 modality names (t1, t1ce, t2, flair) to int16
    volumes; ``seg`` uint8 labels in ``convention``; ``affine`` voxel -> world mm
    (BraTS-like, axes L, P, S); ``brain_index`` sorted flat indices of the brain
    voxels and ``tissue_points`` float32 (3, N) their GM, WM, CSF fractions;
    ``mgmt`` 0/1; ``tumour`` the drawn tumour parameters.
    """

    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    convention: Convention
    brain_index: np.ndarray
    tissue_points: np.ndarray
    mgmt: int
    tumour: TumourParams

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.seg.shape

    @property
    def brain(self) -> np.ndarray:
        """Bool brain mask (X, Y, Z): the voxels that are non-zero in every image."""
        mask = np.zeros(self.shape, dtype=bool)
        mask.ravel()[self.brain_index] = True
        return mask

    def tissue(self, name: str) -> np.ndarray:
        """Template tissue fraction ``"gm"``, ``"wm"`` or ``"csf"`` as float32 (X, Y, Z)."""
        out = np.zeros(self.shape, dtype=np.float32)
        out.ravel()[self.brain_index] = self.tissue_points[("gm", "wm", "csf").index(name)]
        return out

    def volumes_ml(self) -> dict[str, float]:
        """Sub-region volumes in mL (NCR, ED, ET)."""
        voxel_ml = abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0
        counts = np.bincount(self.seg.ravel(), minlength=5)
        return {sub: float(counts[value]) * voxel_ml for sub, value in get_convention(self.convention).values.items()}


def default_spacing(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """Voxel size (mm) that makes ``shape`` cover the BraTS field of view (1 mm at 240x240x155)."""
    return tuple(fov / n for fov, n in zip(BRATS_FOV_MM, shape))


def brats_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel -> world mm affine of a BraTS volume: ``diag(-sx, -sy, sz)``, y origin at the far edge.

    At 1 mm and 240 x 240 x 155 this is the affine of the BraTS files:
    ``[[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]]``.
    """
    sx, sy, sz = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[1, 3] = (shape[1] - 1) * sy
    return affine


def synthesize(
    seed: int,
    *,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    convention: str = "brats2021",
    mgmt: int | None = None,
) -> SyntheticCase:
    """Generate one case in memory.

    ``shape`` voxels (X, Y, Z) of ``spacing`` mm (default: the BraTS field of view
    240 x 240 x 155 mm divided by ``shape``, i.e. 1 mm at the default shape); ``mgmt``
    0/1 or ``None`` to draw it from the seed. Deterministic in all arguments.
    """
    conv = get_convention(convention)
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in (spacing if spacing is not None else default_spacing(shape)))
    rng = np.random.default_rng(seed)
    drawn = int(rng.integers(0, 2))  # always drawn: a given label leaves the other draws unchanged
    mgmt = drawn if mgmt is None else mgmt
    if mgmt not in (0, 1):
        raise ValueError(f"mgmt must be 0 or 1, got {mgmt!r}")
    template = load_template()
    affine = brats_affine(shape, spacing)
    to_template = _head_pose(rng, template, affine, shape)
    voxels, points = _brain_points(template, to_template, shape)
    tumour = draw_tumour(rng, template, mgmt)
    sampled = mass_effect(points, tumour)
    gm_map, wm_map = tissue_maps(spacing)
    gm = ndimage.map_coordinates(gm_map, sampled, order=1, prefilter=False, output=np.float32)
    wm = ndimage.map_coordinates(wm_map, sampled, order=1, prefilter=False, output=np.float32)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tumour_fractions, labels = paint_tumour(rng, tumour, points, wm, csf, conv, spacing)
    flat = np.ravel_multi_index(voxels, shape)
    images = {
        modality: _contrast_image(rng, modality, gm, wm, csf, tumour_fractions, voxels, flat, shape)
        for modality in _CONTRAST
    }
    seg = np.zeros(shape, dtype=np.uint8)
    seg.ravel()[flat] = labels
    return SyntheticCase(
        images=images,
        seg=seg,
        affine=affine,
        convention=conv.name,
        brain_index=flat,
        tissue_points=np.stack([gm, wm, csf]),
        mgmt=mgmt,
        tumour=tumour,
    )


def _head_pose(rng: np.random.Generator, template: Template, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(4, 4) case voxel -> template voxel: a random head rotation (few degrees), scale and shift.

    Without jitter the brain's bounding box is centred in x and y and its top sits 3 mm
    under the top of the field of view (as in BraTS, where the lowest slices cut the
    brain stem).
    """
    angles = np.clip(rng.normal(0.0, 3.0, 3), -7.0, 7.0)
    scale = rng.uniform(0.95, 1.05) * rng.uniform(0.98, 1.02, 3)
    shift = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-4, 1)])
    head = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(scale)
    low, high = nib.affines.apply_affine(template.affine, template.brain_box)
    fov = np.abs(np.diag(affine)[:3]) * np.array(shape)
    brain_centre = (low + high) / 2.0
    brain_centre[2] = max(brain_centre[2], high[2] + 3.0 - fov[2] / 2.0)
    grid_centre = nib.affines.apply_affine(affine, (np.array(shape) - 1) / 2.0)
    world_to_mni = np.eye(4)
    world_to_mni[:3, :3] = np.linalg.inv(head)
    world_to_mni[:3, 3] = brain_centre + shift - world_to_mni[:3, :3] @ grid_centre
    return np.linalg.inv(template.affine) @ world_to_mni @ affine


def _brain_points(
    template: Template, to_template: np.ndarray, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Case voxels inside the posed template brain (nearest neighbour, a sharp skull strip).

    Returns their indices (3, N) and their template voxel coordinates float32 (3, N),
    in C order of the case grid. Only the box around the brain is examined.
    """
    corners = np.array(list(itertools.product(*zip(template.brain_box[0] - 2, template.brain_box[1] + 2))))
    case_corners = nib.affines.apply_affine(np.linalg.inv(to_template), corners)
    last = np.array(shape) - 1
    low = np.clip(np.floor(case_corners.min(0)), 0, last).astype(int)
    high = np.clip(np.ceil(case_corners.max(0)), 0, last).astype(int)
    ranges = [np.arange(lo, hi + 1, dtype=np.float32) for lo, hi in zip(low, high)]
    matrix = to_template.astype(np.float32)
    coords = [
        matrix[a, 0] * ranges[0][:, None, None]
        + matrix[a, 1] * ranges[1][None, :, None]
        + matrix[a, 2] * ranges[2][None, None, :]
        + matrix[a, 3]
        for a in range(3)
    ]
    padded = template.brain_padded
    flat = np.zeros(coords[0].shape, dtype=np.intp)
    for a in range(3):
        nearest = np.rint(coords[a]).astype(np.intp)
        nearest += 1  # the padding
        np.clip(nearest, 0, padded.shape[a] - 1, out=nearest)
        flat *= padded.shape[a]
        flat += nearest
    inside = np.flatnonzero(padded.ravel()[flat])
    voxels = np.stack([index + lo for index, lo in zip(np.unravel_index(inside, flat.shape), low)])
    points = np.stack([c.ravel()[inside] for c in coords])
    return voxels, points



def _bias_field(rng: np.random.Generator, voxels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth multiplicative bias (N,) float32: exp of a quadratic per scanner axis (about +-25%)."""
    log_bias = np.zeros(voxels.shape[1], dtype=np.float32)
    for axis, size in enumerate(shape):
        t = np.linspace(-1.0, 1.0, size)
        linear, quadratic = rng.normal(0.0, 0.12), rng.normal(0.0, 0.08)
        log_bias += (linear * t + quadratic * (t * t - 1.0 / 3.0)).astype(np.float32)[voxels[axis]]
    return np.exp(log_bias)


def _contrast_image(
    rng: np.random.Generator,
    modality: str,
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    tumour: TumourFractions,
    voxels: np.ndarray,
    flat: np.ndarray,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """One contrast as an int16 (X, Y, Z) volume: tissue mix, tumour, bias, Rician noise."""
    level = {name: np.float32(value * rng.normal(1.0, 0.04)) for name, value in _CONTRAST[modality].items()}
    signal = gm * level["gm"] + wm * level["wm"] + csf * level["csf"]
    near = tumour.near
    tissue_left = 1.0 - sum(tumour.fractions.values())
    tumour_signal = sum(fraction * tumour.gains[name] * level[name] for name, fraction in tumour.fractions.items())
    signal[near] = signal[near] * tissue_left + tumour_signal
    signal *= _bias_field(rng, voxels, shape)
    sigma = np.float32(rng.uniform(0.02, 0.035))
    real = signal + sigma * rng.standard_normal(signal.size, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.size, dtype=np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    magnitude *= np.float32(rng.uniform(*_WM_LEVEL[modality]))
    volume = np.zeros(shape, dtype=np.int16)
    volume.ravel()[flat] = np.clip(np.rint(magnitude), 1, np.iinfo(np.int16).max).astype(np.int16)
    return volume
