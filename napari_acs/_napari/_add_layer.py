"""Add a layer without stalling the event loop for the whole of napari's set-up.

napari sets up a new layer synchronously on insertion: its vispy visuals, the visuals of
its overlays, its layer controls and, as it becomes the selected layer, the switch of
every selection-driven widget. For a whole-brain Labels layer that is ~250 ms on 2 cores
in one event-loop turn. Here the insertion is split over several turns: the layer goes
in unselected and without its paint-tool overlays (~130 ms of vispy set-up nobody sees
until a paint tool is picked); the next turns select it and put the overlays back, one
per turn (issue: no stall above 200 ms while segmenting).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from qtpy.QtCore import QTimer

from napari_acs._napari._current import unwrap

#: Overlays napari's Labels layer creates for its paint tools (napari 0.5-0.9 names).
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: Pause between two deferred steps (ms): long enough for Qt to repaint and run other
#: timers in between (zero-delay timers posted from a timer may all run in one pass).
STEP_INTERVAL_MS = 50


def add_layer_in_steps(viewer: Any, layer: Any, *, select: bool = True, paint_tools: bool = True) -> Any:
    """``viewer.layers.append(layer)``, with selection and paint-tool overlays on later turns.

    Build ``layer`` in a worker thread to take its construction off the GUI thread too.
    ``select=False`` leaves the selection alone; ``paint_tools=False`` never builds the
    paint-tool overlays (display-only copies, which are never selected or painted).
    Works on any napari version: what it cannot defer is done at once.
    """
    layers = unwrap(viewer).layers  # the layer list itself, not the plugin's public-only proxy
    overlays = getattr(layer, "_overlays", None)
    deferred = [(key, overlays.pop(key)) for key in DEFERRED_OVERLAYS if overlays is not None and key in overlays]
    activate = getattr(layers, "_activate_on_insert", None)
    if activate is not None:
        layers._activate_on_insert = False
    try:
        layers.append(layer)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate

    steps: deque = deque()
    if select and activate:
        steps.append(lambda: setattr(layers.selection, "active", layer) if layer in layers else None)
    for key, overlay in deferred if paint_tools else ():
        steps.append(lambda key=key, overlay=overlay: overlays.__setitem__(key, overlay))

    def next_step() -> None:
        steps.popleft()()
        if steps:
            QTimer.singleShot(STEP_INTERVAL_MS, next_step)

    if steps:
        QTimer.singleShot(STEP_INTERVAL_MS, next_step)
    return layer
