"""Cancel and progress inside one forward pass (a whole-brain window takes seconds)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from torch import nn

from napari_acs.progress import CancelSignal, check_cancel

#: Least time (s) between two within-forward progress calls.
TICK_SECONDS = 0.1


@contextlib.contextmanager
def watch_layers(
    model: nn.Module,
    cancel: CancelSignal = None,
    what: str = "operation",
    on_layer: Callable[[float], None] | None = None,
) -> Iterator[None]:
    """Check ``cancel`` before every leaf layer and report the fraction of a pass done.

    ``on_layer(fraction)`` is called at most every :data:`TICK_SECONDS` with the
    share of the current forward pass computed so far: leaf-layer calls over the
    count of the previous pass (the leaf modules before the first pass ends).
    A check costs one Python call per layer, microseconds against milliseconds.
    Hooks are removed on exit.
    """
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    state = {"calls": 0, "per_pass": max(len(leaves), 1), "last": time.monotonic()}

    def before_layer(module: nn.Module, args: object) -> None:
        check_cancel(cancel, what)
        state["calls"] += 1
        now = time.monotonic()
        if on_layer is not None and now - state["last"] >= TICK_SECONDS:
            state["last"] = now
            on_layer(min(state["calls"] / state["per_pass"], 1.0))

    def after_model(module: nn.Module, args: object, output: object) -> None:
        state["per_pass"], state["calls"] = max(state["calls"], 1), 0

    handles = [m.register_forward_pre_hook(before_layer) for m in leaves]
    handles.append(model.register_forward_hook(after_model))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
