"""Voxel grids of a raw exam: the 1 mm grid over the reference's field of view, SimpleITK images.

A grid is a shape (X, Y, Z) and a (4, 4) affine from voxel indices to world mm (RAS+, as
nibabel). SimpleITK works in LPS+ physical coordinates: :func:`to_sitk` and
:func:`from_sitk` convert, so a transform found by SimpleITK maps LPS points, and
:func:`lps_points` converts point lists between RAS+ and LPS+.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.affines import apply_affine, voxel_sizes

#: Largest difference (mm, any affine entry) for two grids to count as one.
GRID_TOLERANCE_MM = 1e-3
_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: ``shape`` (X, Y, Z) and ``affine`` (4, 4) voxel index -> world mm (RAS+)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the grid's axes."""
        return tuple(float(s) for s in voxel_sizes(self.affine))

    def same_as(self, other: Grid) -> bool:
        """Same shape and affines within :data:`GRID_TOLERANCE_MM`."""
        return self.shape == other.shape and bool(np.abs(self.affine - other.affine).max() <= GRID_TOLERANCE_MM)

    def is_isotropic(self, spacing_mm: float) -> bool:
        """Whether every voxel side is ``spacing_mm`` (within 1 um)."""
        return bool(np.allclose(self.spacing, spacing_mm, atol=GRID_TOLERANCE_MM))

    def corners(self) -> np.ndarray:
        """(8, 3) world mm (RAS+) of the field of view's corners (voxel edges, not centres)."""
        edges = [(-0.5, n - 0.5) for n in self.shape]
        return apply_affine(self.affine, np.array(list(itertools.product(*edges))))

    def header(self) -> nib.Nifti1Header:
        """A NIfTI-1 header for this grid: q/sform = ``affine`` (code 1, scanner), mm units."""
        image = nib.Nifti1Image(np.zeros((1, 1, 1), dtype=np.uint8), self.affine)
        header = image.header
        header.set_data_shape(self.shape)
        header.set_qform(self.affine, code=1)
        header.set_sform(self.affine, code=1)
        header.set_xyzt_units("mm", "sec")
        return header


def isotropic_grid(grid: Grid, spacing_mm: float = 1.0) -> Grid:
    """The grid of ``spacing_mm`` voxels along ``grid``'s axes that covers its field of view.

    Same axes and directions (an oblique grid stays oblique), same outer edge at the first
    corner; the count along each axis is the field of view divided by ``spacing_mm``,
    rounded up. A grid that already has ``spacing_mm`` voxels is returned as it is.
    """
    if grid.is_isotropic(spacing_mm):
        return grid
    spacing = np.array(grid.spacing)
    shape = tuple(int(math.ceil(n * s / spacing_mm - 1e-6)) for n, s in zip(grid.shape, spacing))
    step = spacing_mm / spacing  # new voxel -> old voxel index units
    to_old = np.diag([*step, 1.0])
    to_old[:3, 3] = -0.5 + 0.5 * step  # the first new centre half a new voxel inside the old edge
    return Grid(shape, grid.affine @ to_old)


def overlap_fraction(grid: Grid, other: Grid) -> float:
    """Fraction (0-1) of the smaller field of view inside the other one (bounding boxes in
    world mm; 0 when they are disjoint)."""
    boxes = [(g.corners().min(0), g.corners().max(0)) for g in (grid, other)]
    low = np.maximum(boxes[0][0], boxes[1][0])
    high = np.minimum(boxes[0][1], boxes[1][1])
    common = float(np.prod(np.clip(high - low, 0.0, None)))
    smaller = min(float(np.prod(hi - lo)) for lo, hi in boxes)
    return common / smaller if smaller > 0 else 0.0


def gap_mm(grid: Grid, other: Grid) -> float:
    """Distance (mm) between the two fields of view's bounding boxes (0 if they touch)."""
    boxes = [(g.corners().min(0), g.corners().max(0)) for g in (grid, other)]
    gaps = np.maximum(boxes[1][0] - boxes[0][1], boxes[0][0] - boxes[1][1])
    return float(np.linalg.norm(np.clip(gaps, 0.0, None)))


def to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A float32 SimpleITK image of ``array`` (X, Y, Z) on ``grid`` (LPS+ physical space)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0)), dtype=np.float32))
    return _with_geometry(image, grid)


def grid_image(grid: Grid) -> sitk.Image:
    """A small (uint8) SimpleITK image with ``grid``'s geometry: the reference of a resampling."""
    image = sitk.Image([int(n) for n in grid.shape], sitk.sitkUInt8)
    return _with_geometry(image, grid)


def _with_geometry(image: sitk.Image, grid: Grid) -> sitk.Image:
    matrix = _LPS @ grid.affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (matrix / spacing).ravel()])
    image.SetOrigin([float(v) for v in _LPS @ grid.affine[:3, 3]])
    return image


def from_sitk(image: sitk.Image) -> np.ndarray:
    """The voxels of a SimpleITK image as a numpy array (X, Y, Z) (a copy)."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).copy()


def resample(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None, *,
             labels: bool = False) -> np.ndarray:
    """``image`` sampled on ``grid`` through ``transform`` (grid points -> image points, LPS mm;
    identity if ``None``): linear for intensities (float32), nearest neighbour for ``labels``
    (uint8); 0 outside ``image``. Returns (X, Y, Z)."""
    transform = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    pixel = sitk.sitkUInt8 if labels else sitk.sitkFloat32
    return from_sitk(sitk.Resample(image, grid_image(grid), transform, interpolator, 0.0, pixel))


def lps_points(points_ras: np.ndarray) -> np.ndarray:
    """(N, 3) world mm RAS+ -> LPS+ (SimpleITK's physical space); the same map back."""
    return np.asarray(points_ras, dtype=float) @ _LPS


