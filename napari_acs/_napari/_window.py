"""Window / level on napari image layers: the layer it acts on, its presets, the right-drag.

A window is napari's ``contrast_limits`` seen as width and level
(:class:`napari_acs.io.window.Window`). The right mouse button dragged on a canvas changes
the window of the image being read, as in radiology viewers: horizontal = width, vertical =
level (:func:`napari_acs.io.window.dragged`). It acts on the active layer when that is a shown
image, otherwise on the top-most shown image; in the orthogonal views it acts on the main
viewer's layer, whose mirrors follow it (see :mod:`napari_acs._napari._widget_ortho`).

The drag is a napari mouse-drag callback (``viewer.mouse_drag_callbacks``, public API):
module-level functions holding no widget, installed once per viewer by the widgets that
offer it. It marks its events handled, so that the camera does not also zoom (vispy's
own right-drag) while the window changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
from napari.layers import Image

from napari_acs._napari._layers import WINDOWS_KEY
from napari_acs.io.window import AUTO_BRAIN, Window, dragged, sequence_name, window_presets

#: napari's number for the right mouse button (``event.button``).
DRAG_BUTTON = 2


def window_target(viewer: Any) -> Image | None:
    """The image whose window the user changes: the active layer if it is a shown image,
    else the top-most shown image, else ``None``."""
    active = viewer.layers.selection.active
    if isinstance(active, Image) and active.visible:
        return active
    return next((layer for layer in reversed(list(viewer.layers))
                 if isinstance(layer, Image) and layer.visible), None)


def layer_sequence(layer: Any) -> str | None:
    """The MRI sequence an image layer shows (``"FLAIR"``...): its metadata, else its name's last word."""
    named = (layer.metadata or {}).get("modality")
    words = str(layer.name).split()
    return sequence_name(named) or (sequence_name(words[-1]) if words else None)


def layer_presets(layer: Any) -> dict[str, Window]:
    """The window presets of an image layer: kept in its metadata by the reader, else computed
    (the first time, ~0.1 s for a BraTS volume) and kept there."""
    stored = (layer.metadata or {}).get(WINDOWS_KEY)
    if not stored:
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        presets = window_presets(np.asarray(data), layer_sequence(layer))
        layer.metadata[WINDOWS_KEY] = stored = {name: (w.width, w.level) for name, w in presets.items()}
    return {name: Window(*pair) for name, pair in stored.items()}


def layer_window(layer: Any) -> Window:
    """The window an image layer shows now."""
    return Window.from_limits(*layer.contrast_limits)


def set_layer_window(layer: Any, window: Window) -> None:
    """Show ``window`` on ``layer`` (its contrast limits; napari widens the slider range if needed)."""
    layer.contrast_limits = window.limits


def window_level_drag(viewer: Any, event: Any, target_viewer: Any = None) -> Generator[None, None, None] | None:
    """Mouse-drag callback: a right-drag changes the window of :func:`window_target` of
    ``target_viewer`` (default ``viewer``, the viewer dragged on).

    Left alone: other buttons, and a labels layer in a paint mode (napari's own right-drag
    sizes the brush there).
    """
    if event.button != DRAG_BUTTON:
        return None
    active = viewer.layers.selection.active
    if active is not None and not isinstance(active, Image) and getattr(active, "mode", "pan_zoom") != "pan_zoom":
        return None
    layer = window_target(target_viewer if target_viewer is not None else viewer)
    if layer is None:
        return None
    return _drag(layer, event)


def _drag(layer: Any, event: Any) -> Generator[None, None, None]:
    start_pos = np.asarray(event.pos, dtype=float)
    start = layer_window(layer)
    reference = layer_presets(layer)[AUTO_BRAIN].width
    event.handled = True
    yield
    while event.type == "mouse_move":
        dx, dy = np.asarray(event.pos, dtype=float) - start_pos
        set_layer_window(layer, dragged(start, float(dx), float(dy), reference_width=reference))
        event.handled = True  # not the camera's right-drag zoom too
        yield


def install_window_drag(viewer: Any) -> None:
    """Give ``viewer`` the right-drag window / level (once, however many widgets ask)."""
    if window_level_drag not in viewer.mouse_drag_callbacks:
        viewer.mouse_drag_callbacks.append(window_level_drag)
