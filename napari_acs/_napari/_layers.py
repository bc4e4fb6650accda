"""BratsCase <-> napari layers: display order, layer data, the current case, result layers.

**Display order.** Cases are computed in canonical RAS+ ``(X, Y, Z)``. napari shows the last
two axes of an array, rows down and columns right; radiologists read axial slices with
anterior at the top and the patient's right on the screen's left. So layers hold the view
``display = canonical.transpose(2, 1, 0)[:, ::-1, ::-1]`` (axes ``(Z, Y, X)``, Y and X
reversed): the slider walks inferior to superior. Both directions are views, never
copies; ``scale`` carries the spacing in mm and ``translate`` the position, so that napari's
world coordinates are the scanner's DICOM patient coordinates in mm, ``(z, y, x)`` = (S, P, L),
for every layer of any file (:func:`display_translate`): files on different grids (another
origin, another voxel size) overlay where they lie in the scanner. The rotation of an
oblique grid is not shown (as in the canonical arrays: voxel axes, nearest RAS+ directions).

**The current case** (the one the widgets work on). Layers opened by the plugin carry their
case in ``layer.metadata["napari_acs"]["case"]``. The current case is the case of the
selected (active) layer; when the active layer has none (nothing selected, or a layer from
elsewhere), it is the case of the top-most layer that has one, which is the most recently
opened case unless the user reordered the layer list.

**A prepared case** (a raw exam the Load widget prepared as BraTS does, on a new 1 mm grid)
also carries its :class:`~napari_acs.prepare.PreparedExam` in ``metadata["napari_acs"]["prepared"]``,
on every layer of the case, predictions included: labels drawn on it are saved on the grid of
the exam's reference file (:func:`save_case_labels`), not on the 1 mm grid.

napari and Qt are imported inside the functions that need them, so the reader (which
imports this module) stays light.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import numpy as np

from napari_acs.io.labels import SUB_REGION_NAMES, colormap, get_convention
from napari_acs.io.window import AUTO_BRAIN, Window, window_presets

MODALITY_NAMES = ("T1", "T1ce", "T2", "FLAIR")
#: Shown when a case opens (oedema and the tumour's extent at a glance); the other
#: sequences are hidden, one click (layer list, or the Window / level widget) away.
DEFAULT_VISIBLE = "FLAIR"
METADATA_KEY = "napari_acs"
#: Image layer metadata key of its window presets (see :func:`window_metadata`).
WINDOWS_KEY = "window_presets"
#: ``metadata["napari_acs"]`` key of a prepared case's PreparedExam (see the module text).
PREPARED_KEY = "prepared"
#: Once a prediction is shown over it, the reference segmentation is drawn as outlines this
#: thick (data pixels), opaque, so that it never blends with the filled prediction (opacity 0.6).
REFERENCE_CONTOUR = 1
REFERENCE_OPACITY = 1.0


def to_display(volume: np.ndarray) -> np.ndarray:
    """Canonical ``(..., X, Y, Z)`` -> display ``(..., Z, Y', X')`` (a view)."""
    moved = np.moveaxis(volume, (-3, -1), (-1, -3))
    return moved[..., ::-1, ::-1]


def from_display(volume: np.ndarray) -> np.ndarray:
    """Display ``(..., Z, Y', X')`` -> canonical ``(..., X, Y, Z)`` (a view)."""
    return np.moveaxis(volume[..., ::-1, ::-1], (-3, -1), (-1, -3))


def display_scale(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Voxel size in mm along the display axes ``(Z, Y, X)``."""
    return (float(spacing[2]), float(spacing[1]), float(spacing[0]))


def display_translate(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """``translate`` (mm) of the display axes ``(Z, Y', X')`` of a canonical grid.

    ``affine`` (4, 4) maps canonical voxels ``(X, Y, Z)`` to RAS+ world mm; the display
    reverses Y and X, so display index 0 is the most anterior row and the right-most
    column. Display coordinates are then ``(S, -A, -R)`` = DICOM ``(z, y, x)`` in LPS mm.
    """
    affine = np.asarray(affine, dtype=float)
    corner = affine @ np.array([shape[0] - 1, shape[1] - 1, 0, 1.0])  # display index (0, 0, 0)
    return (float(corner[2]), float(-corner[1]), float(-corner[0]))


def display_geometry(case: Any) -> dict:
    """``scale`` and ``translate`` of a case's layers (see :func:`display_translate`)."""
    return {"scale": display_scale(case.spacing), "translate": display_translate(case.affine, case.shape)}


def contrast_limits(volume: np.ndarray, sequence: str | None = None) -> tuple[float, float]:
    """The "Auto brain" window's limits: 0.5-99.5 percentiles of the non-zero (brain) voxels."""
    return window_presets(volume, sequence)[AUTO_BRAIN].limits


def window_metadata(volume: np.ndarray, sequence: str | None = None) -> dict[str, tuple[float, float]]:
    """The window presets of an image layer, ``{preset name: (width, level)}``, kept in its
    ``metadata[WINDOWS_KEY]`` (computed once, when the case is read, off the GUI thread)."""
    return {name: (w.width, w.level) for name, w in window_presets(volume, sequence).items()}


def case_metadata(case: Any, prepared: Any | None = None) -> dict:
    """What a layer keeps to write results back on the source grid (``prepared``: the
    PreparedExam of a prepared case, whose reference file's grid that is)."""
    return {
        METADATA_KEY: {
            "case": case,  # the layers are views of case.image: no extra memory
            "case_id": case.case_id,
            "affine": np.asarray(case.affine),
            "spacing": tuple(case.spacing),
            "convention": case.convention,
            PREPARED_KEY: prepared,
        }
    }


def labels_layer_kwargs(case: Any, name: str = "segmentation") -> dict:
    """Keyword arguments of a BraTS Labels layer: colours, region names, geometry."""
    from napari.utils.colormaps import DirectLabelColormap

    conv = get_convention(case.convention)
    values = conv.values
    return {
        "name": name,
        **display_geometry(case),
        "colormap": DirectLabelColormap(color_dict=colormap(conv)),
        "features": {
            "index": [0, *values.values()],
            "region": ["background", *(SUB_REGION_NAMES[k] for k in values)],
        },
        "opacity": 0.6,
        "metadata": case_metadata(case),
    }


def case_layer_data(case: Any, prepared: Any | None = None) -> list[tuple]:
    """Layer data tuples for a case: one image layer per modality it has (a sequence missing
    from files assigned by the user has none), plus its seg if any. FLAIR is shown, or the
    first sequence present without FLAIR. ``prepared``: see :func:`case_metadata`."""
    layers: list[tuple] = []
    meta = case_metadata(case, prepared)
    missing = set(getattr(case, "missing", ()))
    present = [(name, volume) for name, modality, volume in zip(MODALITY_NAMES, case.modalities, case.image)
               if modality not in missing]
    shown = DEFAULT_VISIBLE if DEFAULT_VISIBLE in dict(present) else present[0][0]
    for name, volume in present:
        windows = window_metadata(volume, name)
        layers.append(
            (
                to_display(volume),
                {
                    "name": f"{case.case_id} {name}",
                    **display_geometry(case),
                    "contrast_limits": Window(*windows[AUTO_BRAIN]).limits,
                    "colormap": "gray",
                    # one modality shown at a time; the others are a click away
                    "visible": name == shown,
                    "metadata": {**meta, "modality": name, WINDOWS_KEY: windows},
                },
                "image",
            )
        )
    if case.label is not None:
        layers.append(
            (to_display(case.label), labels_layer_kwargs(case, f"{case.case_id} seg"), "labels")
        )
    return layers


def outline(layer: Any) -> None:
    """Draw a reference Labels layer as opaque outlines (:data:`REFERENCE_CONTOUR`), so that a
    filled prediction over it stays distinct. napari's Labels take ``contour`` as a property
    only (not in the constructor, nor in a reader's layer data), so it is set on the layer."""
    layer.contour, layer.opacity = REFERENCE_CONTOUR, REFERENCE_OPACITY


# --------------------------------------------------------------------------- the current case

PREDICTION_SUFFIX = "prediction"


def _own_case(case: Any) -> Any:
    """Our own :class:`~napari_acs.io.BratsCase` (or PreparedExam) behind napari's ``PublicOnlyProxy``.

    Workaround, scoped to the plugin's own objects: plugin widgets get a proxied viewer,
    and ``PublicOnlyProxy.create`` (napari/utils/_proxies.py) wraps every object whose
    type's module name starts with "napari", which includes ``napari_acs``. A proxied case
    would hand proxied arrays to the backend; ``__wrapped__`` is wrapt's documented
    attribute for the object behind a proxy.
    """
    return getattr(case, "__wrapped__", case)


def layer_case(layer: Any) -> Any | None:
    """The :class:`~napari_acs.io.BratsCase` a layer was made from, or ``None``."""
    info = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
    case = info.get("case")
    return None if case is None else _own_case(case)


def layer_prepared(layer: Any) -> Any | None:
    """The :class:`~napari_acs.prepare.PreparedExam` of a prepared case's layer, or ``None``."""
    info = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
    prepared = info.get(PREPARED_KEY)
    return None if prepared is None else _own_case(prepared)


def case_prepared(viewer: Any, case: Any) -> Any | None:
    """The PreparedExam that ``case`` was prepared by (kept by its layers), or ``None``."""
    return next((prepared for layer in viewer.layers
                 if layer_case(layer) is case and (prepared := layer_prepared(layer)) is not None), None)


def save_case_labels(labels: np.ndarray, case: Any, path: Any, *, prepared: Any | None = None,
                     overwrite: bool = False) -> Any:
    """Write canonical labels (X, Y, Z) of ``case`` as NIfTI: on its source file's grid, or, for a
    case ``prepared`` from a raw exam, on the grid of the exam's reference file (voxel for voxel
    when that is the case's 1 mm grid); returns the path written."""
    if prepared is not None:
        return prepared.save_on_reference(labels, path, overwrite=overwrite)
    from napari_acs.io import save_segmentation

    return save_segmentation(labels, case, path, overwrite=overwrite)


def current_case(viewer: Any) -> Any | None:
    """The active layer's case, else the top-most layer's case, else ``None``."""
    active = viewer.layers.selection.active
    if active is not None and (case := layer_case(active)) is not None:
        return case
    for layer in reversed(list(viewer.layers)):
        if (case := layer_case(layer)) is not None:
            return case
    return None


def prediction_name(case: Any) -> str:
    """Name of the Labels layer the Segment widget writes for ``case``."""
    return f"{case.case_id} {PREDICTION_SUFFIX}"


def edited_name(case: Any) -> str:
    """Name an edited prediction layer is kept under when a new run takes its place
    (napari appends `` [1]``... if it is taken)."""
    return f"{prediction_name(case)} (edited)"


def labels_digest(labels: np.ndarray) -> str:
    """A fingerprint of a label volume (its shape and voxel values): equal volumes, equal digests."""
    data = np.ascontiguousarray(labels)
    digest = hashlib.blake2b(repr((data.shape, data.dtype.str)).encode(), digest_size=16)
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


def reference_layer(viewer: Any, case: Any) -> Any | None:
    """The case's reference segmentation layer (the reader's ``"<id> seg"``), or ``None``.

    Only a Labels layer of the same case counts; the widget's own predictions never do (neither
    ``"<id> prediction"`` nor the edited ones kept beside it, ``"<id> prediction (edited)"``).
    """
    from napari.layers import Labels

    candidates = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and layer_case(layer) is case and not layer.name.startswith(prediction_name(case))
    ]
    preferred = [layer for layer in candidates if layer.name == f"{case.case_id} seg"]
    return (preferred or candidates or [None])[0]


def canonical_labels(layer: Any) -> np.ndarray:
    """A Labels layer's data back in canonical ``(X, Y, Z)`` order, as a copy."""
    return np.array(from_display(np.asarray(layer.data)), dtype=np.uint8)


# --------------------------------------------------------------------------- adding a layer

#: Overlays napari's Labels layer creates for its paint tools (napari 0.5-0.9 names).
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: Pause between two deferred steps (ms): long enough for Qt to repaint and run other
#: timers in between (zero-delay timers posted from a timer may all run in one pass).
STEP_INTERVAL_MS = 50


def add_layer_in_steps(viewer: Any, layer: Any, *, paint_tools: bool = True) -> Any:
    """``viewer.layers.append(layer)``, with the paint-tool overlays added on later turns.

    napari sets up a new layer synchronously on insertion: its vispy visuals, the visuals
    of its overlays and its layer controls. For a whole-brain Labels layer on 2 cores that
    turn was the GUI's longest stall while segmenting. The layer's two paint-tool overlays
    (~130 ms of vispy set-up nobody sees until a paint tool is picked) are put back one
    per later turn instead.

    Workaround, scoped to a layer the plugin built itself: napari has no public way to
    defer a layer's overlays, so the layer's own overlay dict (``layer._overlays``) is
    emptied before insertion and refilled afterwards. Measured with
    ``benchmarks/bench_gui_stall.py`` (largest gap while showing the result, 4 runs each,
    2 cores): 163-220 ms without it, 85-137 ms with it. Without that attribute (another
    napari version) the layer is added as it is.

    Build ``layer`` in a worker thread to take its construction off the GUI thread too.
    ``paint_tools=False`` never builds the paint-tool overlays (display-only copies, which
    are never painted).
    """
    from qtpy.QtCore import QTimer

    overlays = getattr(layer, "_overlays", None)
    deferred = [(key, overlays.pop(key)) for key in DEFERRED_OVERLAYS if overlays is not None and key in overlays]
    viewer.layers.append(layer)
    steps: deque = deque()
    for key, overlay in deferred if paint_tools else ():
        steps.append(lambda key=key, overlay=overlay: overlays.__setitem__(key, overlay))

    def next_step() -> None:
        steps.popleft()()
        if steps:
            QTimer.singleShot(STEP_INTERVAL_MS, next_step)

    if steps:
        QTimer.singleShot(STEP_INTERVAL_MS, next_step)
    return layer
