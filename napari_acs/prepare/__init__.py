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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_acs.prepare.errors import PrepareError
    from napari_acs.prepare.exam import PreparedExam, PrepareSettings, prepare_exam
    from napari_acs.prepare.register import RegistrationSettings
    from napari_acs.prepare.writeback import to_reference_grid

# Loaded on first use, so that ``napari-acs --help`` (which registers ``prepare``) stays quick.
_EXPORTS = {
    "PrepareError": "errors",
    "PrepareSettings": "exam",
    "PreparedExam": "exam",
    "RegistrationSettings": "register",
    "prepare_exam": "exam",
    "to_reference_grid": "writeback",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"napari_acs.prepare.{_EXPORTS[name]}"), name)
