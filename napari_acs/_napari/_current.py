"""Which BraTS case the widgets work on, and the layers that belong to it.

Layers opened by the plugin carry their case in ``layer.metadata["napari_acs"]["case"]``.
The *current case* is the case of the selected (active) layer; when the active layer
has none (nothing selected, or a layer from elsewhere), it is the case of the top-most
layer that has one, which is the most recently opened case unless the user reordered
the layer list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels

from napari_acs._napari._layers import METADATA_KEY, from_display

PREDICTION_SUFFIX = "prediction"


def _own_case(case: Any) -> Any:
    """Our own :class:`~napari_acs.io.BratsCase` behind napari's ``PublicOnlyProxy``.

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


def reference_layer(viewer: Any, case: Any) -> Any | None:
    """The case's reference segmentation layer (the reader's ``"<id> seg"``), or ``None``.

    Only a Labels layer of the same case counts; the widget's own prediction never does.
    """
    candidates = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and layer_case(layer) is case and layer.name != prediction_name(case)
    ]
    preferred = [layer for layer in candidates if layer.name == f"{case.case_id} seg"]
    return (preferred or candidates or [None])[0]


def canonical_labels(layer: Any) -> np.ndarray:
    """A Labels layer's data back in canonical ``(X, Y, Z)`` order, as a copy."""
    return np.array(from_display(np.asarray(layer.data)), dtype=np.uint8)
