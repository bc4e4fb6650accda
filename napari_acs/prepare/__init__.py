"""Raw exams prepared the way BraTS prepares its cases (issue 21, point 3).

A radiologist's exam is a few sequences with scanner names, on different grids and slice
thicknesses, with a skull. :func:`prepare_exam` co-registers every sequence rigidly to a
reference sequence (SimpleITK, Mattes mutual information), resamples all onto a 1 mm
isotropic grid over the reference's field of view and extracts the brain (deepbet), then
caches the BraTS-named case next to the exam; :func:`to_reference_grid` (or
:meth:`PreparedExam.save_on_reference`) writes a segmentation of it back on the reference
file's own grid.

Modules: :mod:`.grid` (grids, SimpleITK images), :mod:`.register` (rigid registration),
:mod:`.brain` (brain extraction), :mod:`.exam` (the steps), :mod:`.cache` (the prepared
folder), :mod:`.writeback`, :mod:`.cli` (``napari-acs prepare``). SimpleITK here; torch only
when the brain is extracted; no Qt or napari.
"""

from napari_acs.prepare.errors import PrepareError
from napari_acs.prepare.exam import PreparedExam, PrepareSettings, prepare_exam
from napari_acs.prepare.register import RegistrationSettings
from napari_acs.prepare.writeback import to_reference_grid

__all__ = [
    "PrepareError",
    "PrepareSettings",
    "PreparedExam",
    "RegistrationSettings",
    "prepare_exam",
    "to_reference_grid",
]
