"""Add a Labels layer without building its paint-tool overlays in the same event-loop turn.

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
"""

from __future__ import annotations

from collections import deque
from typing import Any

from qtpy.QtCore import QTimer

#: Overlays napari's Labels layer creates for its paint tools (napari 0.5-0.9 names).
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: Pause between two deferred steps (ms): long enough for Qt to repaint and run other
#: timers in between (zero-delay timers posted from a timer may all run in one pass).
STEP_INTERVAL_MS = 50


def add_layer_in_steps(viewer: Any, layer: Any, *, paint_tools: bool = True) -> Any:
    """``viewer.layers.append(layer)``, with the paint-tool overlays added on later turns.

    Build ``layer`` in a worker thread to take its construction off the GUI thread too.
    ``paint_tools=False`` never builds the paint-tool overlays (display-only copies, which
    are never painted).
    """
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
