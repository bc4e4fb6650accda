"""Progress and cancellation shared by every long operation (GUI, CLI and scripts).

Long functions take ``progress(fraction, message)`` and ``cancel``: either an
object with ``is_set()`` (``threading.Event``) or a zero-argument callable that
returns True to stop. They raise :class:`Cancelled` soon after it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, Union


class _EventLike(Protocol):
    def is_set(self) -> bool: ...


ProgressCallback = Callable[[float, str], None]
CancelSignal = Union[_EventLike, Callable[[], bool], None]


class Cancelled(Exception):
    """Raised by a long operation when its cancel signal was set."""


class CancelEvent(threading.Event):
    """A ``threading.Event`` that also says why it was set (``reason``), for logs and run folders."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def set(self, reason: str = "cancelled") -> None:  # type: ignore[override]
        if not self.is_set():
            self.reason = reason
        super().set()


def cancel_reason(cancel: CancelSignal, default: str = "cancelled") -> str:
    """Why ``cancel`` was set: a :class:`CancelEvent`'s reason, else ``default``."""
    return getattr(cancel, "reason", "") or default


def is_cancelled(cancel: CancelSignal) -> bool:
    """True when ``cancel`` (an Event, a callable or None) asks to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def check_cancel(cancel: CancelSignal, what: str = "operation") -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if is_cancelled(cancel):
        raise Cancelled(f"{what} cancelled")


def report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    """Call ``progress`` if given, with ``fraction`` clipped to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)
