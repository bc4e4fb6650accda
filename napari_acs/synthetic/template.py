"""The MNI ICBM152 2009 template the synthetic cases are made from: tissue maps and tumour sites."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_acs.io.sample import sample_data_dir

#: Folder of the template files (see its NOTICE): ``sample_data/template``.
TEMPLATE_DIR = sample_data_dir() / "template"
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


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
def tissue_maps(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM maps low-pass filtered for sampling at ``spacing`` mm (no filter at ~1 mm)."""
    template = load_template()
    sigma = [0.5 * math.sqrt(max(s * s - 1.0, 0.0)) for s in spacing]
    if max(sigma) < 0.3:
        return template.gm, template.wm
    return ndimage.gaussian_filter(template.gm, sigma), ndimage.gaussian_filter(template.wm, sigma)
