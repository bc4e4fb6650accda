"""Deterministic synthetic BraTS-like cases made from the MNI ICBM152 2009 template.

One case = the template's tissue maps (GM, WM, CSF = brain - GM - WM) resampled onto a
BraTS grid (240 x 240 x 155 voxels of 1 mm, axes L-P-S with BraTS' affine) under a
random head pose and size, a glioma painted in (necrotic core NCR, enhancing rim ET,
oedema ED, with mass effect), four contrasts (T1, T1ce, T2, FLAIR) mixed from tissue
intensities, a smooth multiplicative bias field and Rician noise, skull-stripped
(exactly zero outside the brain). The seed fixes everything: the same seed gives
identical arrays and byte-identical files.

The MGMT label of a case shapes its tumour (see :data:`MGMT_EFFECT`), so a classifier
trained on a generated cohort has something to learn.
"""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.special import expit
from scipy.spatial.transform import Rotation

from napari_acs.io.case import MODALITIES, SEG, SEPARATORS
from napari_acs.io.labels import Convention, LabelConvention, get_convention
from napari_acs.io.sample import sample_data_dir

#: Folder of the template files (see its NOTICE): ``sample_data/template``.
TEMPLATE_DIR = sample_data_dir() / "template"
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Field of view of a BraTS volume, mm (240 x 240 x 155 voxels of 1 mm).
BRATS_FOV_MM = (240.0, 240.0, 155.0)
BRATS_SHAPE = (240, 240, 155)
#: gzip level of the written files: fast, and the zero background compresses anyway.
GZIP_LEVEL = 1

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

#: Largest oedema radius factor (noise x white-matter spread) relative to the drawn radius.
_MAX_OEDEMA_EXTENT = 1.6

#: How the MGMT label shapes the tumour: ranges of the oedema extent (oedema radius /
#: core radius) and of the necrotic fraction (necrosis radius / core radius). Methylated
#: tumours (1) get relatively less oedema and more necrosis; the ranges overlap, so the
#: label is learnable but not trivially.
MGMT_EFFECT = {
    0: {"oedema_factor": (1.4, 2.0), "necrosis_fraction": (0.60, 0.85)},
    1: {"oedema_factor": (1.2, 1.7), "necrosis_fraction": (0.72, 0.92)},
}


# --------------------------------------------------------------------------- template


@dataclass(frozen=True, eq=False)
class Template:
    """The MNI ICBM152 2009 maps on their own 1 mm grid (197 x 233 x 189).

    ``gm``/``wm`` float32 probabilities in [0, 1]; ``brain`` bool skull-stripped mask,
    padded by one False voxel on every side (``brain_padded``) for bounds-free lookups;
    ``brain_box`` (2, 3) first and last brain voxel along each axis;
    ``affine`` template voxel -> MNI mm; ``centres`` (N, 3) template voxel coordinates
    where a tumour may sit (deep white matter of either hemisphere) and ``depth`` (N,)
    their distance to the brain surface in mm.
    """

    gm: np.ndarray
    wm: np.ndarray
    brain_padded: np.ndarray
    brain_box: np.ndarray
    affine: np.ndarray
    centres: np.ndarray
    depth: np.ndarray


@functools.lru_cache(maxsize=1)
def load_template(template_dir: Path = TEMPLATE_DIR) -> Template:
    """Read and cache the template (once per process)."""
    missing = [name for name in TEMPLATE_FILES.values() if not (template_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{template_dir}: MNI ICBM152 2009 template file(s) missing: {', '.join(missing)}; "
            "copy them from nilearn's wheel (nilearn/datasets/data/), see sample_data/README.md"
        )
    images = {key: nib.load(template_dir / name) for key, name in TEMPLATE_FILES.items()}
    raw = {key: np.asarray(img.dataobj) for key, img in images.items()}
    brain = raw["t1"] > 0
    scale = np.float32(1.0 / 255.0)
    gm = raw["gm"].astype(np.float32) * scale * brain
    wm = raw["wm"].astype(np.float32) * scale * brain
    affine = images["t1"].affine
    # Tumour centres: deep white matter, off the midline, in the cerebrum; on a 2 mm lattice.
    depth_2mm = ndimage.distance_transform_edt(brain[::2, ::2, ::2]) * 2.0
    lattice = np.argwhere(wm[::2, ::2, ::2] > 0.75) * 2
    mni = nib.affines.apply_affine(affine, lattice)
    keep = (np.abs(mni[:, 0]) >= 12) & (mni[:, 1] > -80) & (mni[:, 1] < 45) & (mni[:, 2] > -25) & (mni[:, 2] < 60)
    lattice = lattice[keep]
    depth = depth_2mm[tuple((lattice // 2).T)]
    brain_vox = np.argwhere(brain)
    return Template(
        gm=gm,
        wm=wm,
        brain_padded=np.pad(brain, 1),
        brain_box=np.stack([brain_vox.min(0), brain_vox.max(0)]),
        affine=affine,
        centres=lattice.astype(np.float64),
        depth=depth,
    )


@functools.lru_cache(maxsize=2)
def _tissue_maps(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM maps low-pass filtered for sampling at ``spacing`` mm (no filter at ~1 mm)."""
    template = load_template()
    sigma = [0.5 * math.sqrt(max(s * s - 1.0, 0.0)) for s in spacing]
    if max(sigma) < 0.3:
        return template.gm, template.wm
    return ndimage.gaussian_filter(template.gm, sigma), ndimage.gaussian_filter(template.wm, sigma)


# --------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class TumourParams:
    """What was drawn for the tumour. Lengths in mm; ``centre`` in template voxel coordinates (1 mm)."""

    centre: tuple[float, float, float]
    core_radius: float
    oedema_factor: float
    necrosis_fraction: float
    has_necrosis: bool
    has_enhancement: bool


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
    tumour = _draw_tumour(rng, template, mgmt)
    sampled = _mass_effect(points, tumour)
    gm_map, wm_map = _tissue_maps(spacing)
    gm = ndimage.map_coordinates(gm_map, sampled, order=1, prefilter=False, output=np.float32)
    wm = ndimage.map_coordinates(wm_map, sampled, order=1, prefilter=False, output=np.float32)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tumour_fractions, labels = _paint_tumour(rng, tumour, points, wm, csf, conv, spacing)
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


def _draw_tumour(rng: np.random.Generator, template: Template, mgmt: int) -> TumourParams:
    """Size, extent and place of the glioma; 10% lack necrosis, 10% lack enhancement."""
    effect = MGMT_EFFECT[mgmt]
    whole_ml = math.exp(rng.uniform(math.log(20.0), math.log(150.0)))
    oedema_factor = float(rng.uniform(*effect["oedema_factor"]))
    necrosis_fraction = float(rng.uniform(*effect["necrosis_fraction"]))
    variant = rng.random()
    oedema_radius = (3.0 * whole_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    core_radius = float(np.clip(oedema_radius / oedema_factor, 7.0, min(26.0, template.depth.max() - 6.0)))
    candidates = np.flatnonzero(template.depth >= core_radius + 6.0)
    centre = template.centres[rng.choice(candidates)] + rng.uniform(-1.0, 1.0, 3)
    return TumourParams(
        centre=tuple(float(c) for c in centre),
        core_radius=core_radius,
        oedema_factor=oedema_factor,
        necrosis_fraction=necrosis_fraction,
        has_necrosis=bool(variant >= 0.1),
        has_enhancement=bool(not 0.1 <= variant < 0.2),
    )


def _mass_effect(points: np.ndarray, tumour: TumourParams) -> np.ndarray:
    """Template coordinates to sample (3, N): tissue near the tumour pushed outwards.

    Radial map r -> r (1 - 0.35 exp(-(r / 1.5 R)^2)) around the centre (R = core
    radius), monotonic, so surrounding structures (ventricles, cortex) are displaced.
    """
    centre = np.array(tumour.centre, dtype=np.float32)[:, None]
    offset = points - centre
    r2 = np.einsum("ij,ij->j", offset, offset)
    push = np.float32(0.35) * np.exp(-r2 / np.float32((1.5 * tumour.core_radius) ** 2))
    return centre + offset * (1.0 - push)


def _waves(rng: np.random.Generator, count: int, frequency: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth random field: a sum of ``count`` random plane waves, unit variance.

    ``frequency`` is the spread of the wave vectors (rad per unit of the argument).
    """
    vectors = rng.normal(0.0, frequency, (count, 3)).astype(np.float32)
    phases = rng.uniform(0.0, 2.0 * math.pi, (count, 1)).astype(np.float32)
    amplitudes = (rng.normal(0.0, 1.0, count) * math.sqrt(2.0 / count)).astype(np.float32)

    def field(x: np.ndarray) -> np.ndarray:
        return amplitudes @ np.sin(vectors @ x + phases)

    return field


@dataclass(frozen=True)
class _TumourFractions:
    """Per-voxel fractions (partial volume) of each tumour class on the points ``near``,
    and each class's relative intensity there (``gains``: texture, oedema fading)."""

    near: np.ndarray
    fractions: dict[str, np.ndarray]
    gains: dict[str, np.ndarray]


def _paint_tumour(
    rng: np.random.Generator,
    tumour: TumourParams,
    points: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    conv: LabelConvention,
    spacing: tuple[float, float, float],
) -> tuple[_TumourFractions, np.ndarray]:
    """Irregular nested shapes: core (rim + necrosis) and WM-following oedema.

    Each boundary is an ellipsoid whose radius is modulated by low-frequency noise over
    direction and position. Returns the soft class fractions (partial volume, for the
    intensities) and the hard labels (N,) uint8 in ``conv``.
    """
    core_radius = tumour.core_radius
    oedema_radius = core_radius * tumour.oedema_factor
    rotation = Rotation.from_euler("zyx", rng.uniform(0.0, 360.0, 3), degrees=True).as_matrix().astype(np.float32)
    core_axes = _unit_volume_axes(rng, 0.25)
    oedema_axes = _unit_volume_axes(rng, 0.25)
    necrosis_shift = rng.uniform(-0.1, 0.1, 3).astype(np.float32)[:, None] * np.float32(core_radius)
    shape_noise = [_waves(rng, 8, 2.2) for _ in range(3)]  # over direction (unit vectors)
    bump_noise = [_waves(rng, 6, 0.25) for _ in range(3)]  # over position (mm)
    edge = max(0.5, 0.3 * max(spacing))  # partial-volume width of the core boundaries, mm
    oedema_edge = 3.0 * edge

    # Only points that a boundary (longest axis x largest radius factor) can reach.
    centre = np.array(tumour.centre, dtype=np.float32)[:, None]
    offset = points - centre
    r2 = np.einsum("ij,ij->j", offset, offset)
    oedema_reach = oedema_radius * float(oedema_axes.max()) * _MAX_OEDEMA_EXTENT + 4.0 * oedema_edge
    near = np.flatnonzero(r2 < oedema_reach**2)
    d = offset[:, near]
    r2_near = r2[near]
    direction = d / (np.sqrt(r2_near) + np.float32(1e-3))
    local = rotation.T @ d
    wm_near, csf_near = wm[near], csf[near]
    # Oedema spreads along white matter and spares the cortex.
    extent = _modulation(0.3 * shape_noise[2](direction) + 0.12 * bump_noise[2](d)) / (1.5 - 0.75 * wm_near)
    extent = np.clip(extent, 0.4, _MAX_OEDEMA_EXTENT)
    rho_oedema = np.linalg.norm(local / oedema_axes[:, None], axis=0) / (oedema_radius * extent)

    rho_core = np.full(near.size, np.inf, dtype=np.float32)
    rho_necrosis = np.full(near.size, np.inf, dtype=np.float32)
    core_reach = core_radius * float(core_axes.max()) * 1.4 + 4.0 * edge
    inner = np.flatnonzero(r2_near < core_reach**2)
    d_inner, direction_inner = d[:, inner], direction[:, inner]
    core_shape = core_radius * _modulation(0.25 * shape_noise[0](direction_inner) + 0.08 * bump_noise[0](d_inner))
    rho_core[inner] = np.linalg.norm(local[:, inner] / core_axes[:, None], axis=0) / core_shape
    # The necrosis follows the core's shape, scaled down, off-centre, with its own wobble;
    # the enhancing rim left around it is at least ``rim`` mm thick.
    rim = max(2.0, 1.1 * max(spacing))
    necrosis_radius = core_radius * tumour.necrosis_fraction
    necrosis_shape = core_shape * tumour.necrosis_fraction
    necrosis_shape *= _modulation(0.12 * shape_noise[1](direction_inner) + 0.06 * bump_noise[1](d_inner))
    necrosis_dist = np.linalg.norm(rotation.T @ (d_inner - necrosis_shift) / core_axes[:, None], axis=0)
    rho_necrosis[inner] = np.maximum(necrosis_dist / necrosis_shape, rho_core[inner] / (1.0 - rim / core_radius))

    core = expit((1.0 - rho_core) * (core_radius / edge))
    necrosis = core * expit((1.0 - rho_necrosis) * (necrosis_radius / edge)) if tumour.has_necrosis else 0.0 * core
    oedema = np.clip(expit((1.0 - rho_oedema) * (oedema_radius / oedema_edge)) * (1.0 - csf_near) - core, 0.0, 1.0)
    solid = core - necrosis
    zero = np.zeros_like(core)
    fractions = {
        "ed": oedema,
        "ncr": necrosis,
        "et": solid if tumour.has_enhancement else zero,
        "net": zero if tumour.has_enhancement else solid,
    }
    texture = 1.0 + 0.12 * _blob_noise(rng, d, oedema_reach, cell=3.0)
    # Oedema is most intense next to the core and fades outwards.
    gains = {name: texture for name in fractions}
    gains["ed"] = texture * (1.15 - 0.3 * np.clip(rho_oedema, 0.0, 1.0))

    labels = np.zeros(points.shape[1], dtype=np.uint8)
    in_core = rho_core < 1.0
    near_labels = np.zeros(near.size, dtype=np.uint8)
    near_labels[(rho_oedema < 1.0) & (csf_near < 0.5)] = conv.ed
    near_labels[in_core] = conv.et if tumour.has_enhancement else conv.ncr
    if tumour.has_necrosis:
        near_labels[in_core & (rho_necrosis < 1.0)] = conv.ncr
    labels[near] = near_labels
    return _TumourFractions(near, fractions, gains), labels


def _blob_noise(rng: np.random.Generator, offsets: np.ndarray, reach: float, cell: float) -> np.ndarray:
    """Isotropic smooth noise (N,) float32, unit variance, at ``offsets`` (3, N) mm within ``reach``.

    White noise on a lattice of ``cell`` mm, Gaussian-smoothed (1.5 cells), then
    interpolated linearly: blobs of about 10 mm, without the stripes of plane waves.
    """
    size = int(math.ceil(2.0 * reach / cell)) + 3
    lattice = ndimage.gaussian_filter(rng.standard_normal((size,) * 3, dtype=np.float32), 1.5)
    lattice /= lattice.std()
    return ndimage.map_coordinates(lattice, (offsets + reach) / cell + 1.0, order=1, mode="nearest", output=np.float32)


def _modulation(noise: np.ndarray) -> np.ndarray:
    """Radius factor from a zero-mean noise field, kept in [0.6, 1.4] (bounded shapes)."""
    return np.clip(1.0 + noise, 0.6, 1.4)


def _unit_volume_axes(rng: np.random.Generator, spread: float) -> np.ndarray:
    """Random ellipsoid semi-axes (3,) float32 with product 1 (elongation up to ~``spread``)."""
    axes = np.exp(rng.uniform(-spread, spread, 3))
    return (axes / np.prod(axes) ** (1.0 / 3.0)).astype(np.float32)


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
    tumour: _TumourFractions,
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


# --------------------------------------------------------------------------- files


def case_file_names(case_id: str, convention: str = "brats2021") -> dict[str, str]:
    """File name of each modality and ``"seg"`` of a case, keyed by the convention's names."""
    conv = get_convention(convention).name
    kinds = (*MODALITIES[conv], SEG)
    return {kind: f"{case_id}{SEPARATORS[conv]}{kind}.nii.gz" for kind in kinds}


def make_case(
    case_id: str,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    convention: str = "brats2021",
    shape: tuple[int, int, int] = BRATS_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    mgmt: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one synthetic case folder ``<out_dir>/<case_id>/`` and return it.

    Files are named like BraTS 2021 (``<id>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``,
    ``_seg``) or 2023 (``<id>-t1n``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``): int16 images,
    uint8 labels in that convention, BraTS geometry. The folder appears complete or not
    at all (written aside, then renamed). An existing folder raises
    :class:`FileExistsError` unless ``overwrite``. See :func:`synthesize` for the rest.
    """
    out_dir = Path(out_dir)
    target = out_dir / case_id
    _refuse_existing(target, overwrite)
    case = synthesize(seed, shape=shape, spacing=spacing, convention=convention, mgmt=mgmt)
    names = case_file_names(case_id, convention)
    named = zip(MODALITIES[case.convention], MODALITIES["brats2021"])
    volumes = {**{name: case.images[modality] for name, modality in named}, SEG: case.seg}
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{case_id}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        # zlib releases the GIL: the five files compress in parallel.
        with ThreadPoolExecutor(len(names)) as pool:
            for write in [pool.submit(_write_nifti, volumes[k], case.affine, partial / n) for k, n in names.items()]:
                write.result()
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """gzip NIfTI-1 with qform = sform = ``affine`` (code 1, scanner), mm units; reproducible bytes."""
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0))


# --------------------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class CohortMember:
    """One case of a generated cohort: folder name, generator seed, MGMT label, RSNA id."""

    case_id: str
    seed: int
    mgmt: int
    rsna_id: str


def cohort_members(n: int, *, seed: int = 0, convention: str = "brats2021") -> list[CohortMember]:
    """The first ``n`` cases of the cohort ``seed`` (case ``i`` is the same for every ``n > i``).

    Names follow BraTS (``BraTS2021_00000`` or ``BraTS-GLI-00000-000``); the RSNA id is
    the zero-padded number. MGMT labels are balanced: cases 2k and 2k+1 get one 0 and
    one 1, in an order drawn from the seed.
    """
    if n < 1:
        raise ValueError(f"a cohort needs at least one case, got n={n}")
    conv = get_convention(convention).name
    members = []
    for index in range(n):
        pair_order = np.random.default_rng([seed, index // 2, 1]).integers(0, 2)
        case_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        rsna_id = f"{index:05d}"
        case_id = f"BraTS2021_{rsna_id}" if conv == "brats2021" else f"BraTS-GLI-{rsna_id}-000"
        members.append(CohortMember(case_id, case_seed, int((index + pair_order) % 2), rsna_id))
    return members


def write_mgmt_csv(members: list[CohortMember], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """RSNA-MICCAI 2021 style labels ``BraTS21ID,MGMT_value`` (ids zero-padded to 5), atomically."""
    path = Path(path)
    _refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["BraTS21ID", "MGMT_value"])
        writer.writerows([member.rsna_id, member.mgmt] for member in members)
    os.replace(partial, path)
    return path


def make_cohort(
    out_dir: str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    convention: str = "brats2021",
    mgmt_csv: bool = True,
    overwrite: bool = False,
    progress: Callable[[float, str], None] | None = None,
    workers: int | None = None,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    spacing: tuple[float, float, float] | None = None,
) -> list[Path]:
    """Write ``n`` synthetic cases into ``out_dir`` (plus ``train_labels.csv`` if ``mgmt_csv``).

    Cases are made in ``workers`` processes (default: one per CPU, at most 4; started
    with ``spawn``, so a script calling this needs the usual
    ``if __name__ == "__main__":`` guard, or ``workers=1``); ``progress(fraction,
    message)`` is called after each case. ``shape``/``spacing`` as in :func:`synthesize`. Nothing is written if a
    case folder or the CSV already exists and ``overwrite`` is false
    (:class:`FileExistsError` naming it). Returns the case folders in cohort order.
    """
    out_dir = Path(out_dir)
    members = cohort_members(n, seed=seed, convention=convention)
    csv_path = out_dir / "train_labels.csv"
    for path in [out_dir / m.case_id for m in members] + ([csv_path] if mgmt_csv else []):
        _refuse_existing(path, overwrite)
    workers = min(n, workers or min(os.cpu_count() or 1, 4))
    options = {"convention": convention, "overwrite": overwrite, "shape": shape, "spacing": spacing}
    jobs = [(m.case_id, m.seed, out_dir, {**options, "mgmt": m.mgmt}) for m in members]
    paths: dict[str, Path] = {}

    def done(path: Path) -> None:
        paths[path.name] = path
        if progress is not None:
            progress(len(paths) / n, f"made {path.name} ({len(paths)}/{n})")

    if workers == 1:
        for job in jobs:
            done(_make_case_job(job))
    else:
        # spawn: safe under a GUI's threads; each worker reads the template once.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_make_case_job, job) for job in jobs]):
                done(future.result())
    if mgmt_csv:
        write_mgmt_csv(members, csv_path, overwrite=overwrite)
    return [paths[m.case_id] for m in members]


def _make_case_job(job: tuple[str, int, Path, dict]) -> Path:
    case_id, seed, out_dir, options = job
    return make_case(case_id, seed, out_dir, **options)
