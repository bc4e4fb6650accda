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

Modules: :mod:`~napari_acs.synthetic.template` (the template), :mod:`~.tumour` (the
glioma), :mod:`~.phantom` (one case in memory), :mod:`~.cohort` (BraTS files, cohorts,
the MGMT CSV). numpy, scipy and nibabel only.
"""

from napari_acs.synthetic.cohort import (
    CohortMember,
    case_file_names,
    cohort_members,
    make_case,
    make_cohort,
    write_mgmt_csv,
)
from napari_acs.synthetic.phantom import (
    BRATS_SHAPE,
    SyntheticCase,
    brats_affine,
    default_spacing,
    synthesize,
)
from napari_acs.synthetic.template import Template, load_template
from napari_acs.synthetic.tumour import MGMT_EFFECT, TumourParams

__all__ = [
    "BRATS_SHAPE",
    "MGMT_EFFECT",
    "CohortMember",
    "SyntheticCase",
    "Template",
    "TumourParams",
    "brats_affine",
    "case_file_names",
    "cohort_members",
    "default_spacing",
    "load_template",
    "make_case",
    "make_cohort",
    "synthesize",
    "write_mgmt_csv",
]
