"""The synthetic glioma: where it sits, how big, its nested sub-regions and the mass effect."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.special import expit

from napari_acs.io.labels import LabelConvention
from napari_acs.synthetic.template import Template

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



@dataclass(frozen=True)
class TumourParams:
    """What was drawn for the tumour. Lengths in mm; ``centre`` in template voxel coordinates (1 mm)."""

    centre: tuple[float, float, float]
    core_radius: float
    oedema_factor: float
    necrosis_fraction: float
    has_necrosis: bool
    has_enhancement: bool



def draw_tumour(rng: np.random.Generator, template: Template, mgmt: int) -> TumourParams:
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


def mass_effect(points: np.ndarray, tumour: TumourParams) -> np.ndarray:
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
class TumourFractions:
    """Per-voxel fractions (partial volume) of each tumour class on the points ``near``,
    and each class's relative intensity there (``gains``: texture, oedema fading)."""

    near: np.ndarray
    fractions: dict[str, np.ndarray]
    gains: dict[str, np.ndarray]


def paint_tumour(
    rng: np.random.Generator,
    tumour: TumourParams,
    points: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    conv: LabelConvention,
    spacing: tuple[float, float, float],
) -> tuple[TumourFractions, np.ndarray]:
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
    return TumourFractions(near, fractions, gains), labels


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
