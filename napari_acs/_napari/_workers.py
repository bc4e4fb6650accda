"""Backend calls off the GUI thread: progress relayed to the GUI, Cancel, one task at a time.

The backend's long functions take ``progress(fraction, message)`` and ``cancel``
(see :mod:`napari_acs.progress`) and run synchronously, so they run in a napari
``FunctionWorker`` (a generator worker could only report between its own yields).
Progress calls made in the worker thread are emitted as a Qt signal of an object
living in the GUI thread, which Qt delivers there (queued). Cancel sets the
``threading.Event`` the backend polls and calls ``worker.quit()``, which also drops
the result of the abandoned task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEventLoop, QObject, QTimer, Signal

from napari_acs._napari._gl_safety import block_triton_after_mesa
from napari_acs.progress import Cancelled

Job = Callable[[Callable[[float, str], None], threading.Event], Any]


class TaskRunner(QObject):
    """Runs one backend job at a time in a thread worker and reports back on the GUI thread.

    ``job(progress, cancel)`` runs in the worker and may call :meth:`post` with any
    object. Signals (GUI thread): ``progressed(fraction, message)``, ``posted(object)``,
    ``succeeded(result)`` (not after Cancel), ``failed(exception)``, ``cancelled()``,
    then ``stopped()`` once the worker thread has ended.
    """

    progressed = Signal(float, str)
    posted = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = None
        self._cancel = threading.Event()
        self._relay = _Relay(self)
        self._relay.relayed.connect(self.progressed)
        self._relay.carried.connect(self.posted)

    @property
    def busy(self) -> bool:
        """A job is running (or finishing after Cancel)."""
        return self._worker is not None

    def start(self, job: Job) -> None:
        """Start ``job`` in a worker thread; refused while another job runs."""
        from napari.qt.threading import create_worker

        if self.busy:
            raise RuntimeError("a task is already running; cancel it or wait for it to end")
        block_triton_after_mesa()  # jobs may import torch for the first time
        self._cancel = threading.Event()
        cancel, relay = self._cancel, self._relay
        # errors are shown by the widget, not re-raised into napari's console handler
        worker = create_worker(job, relay.relayed.emit, cancel, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self.succeeded)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def post(self, payload: Any) -> None:
        """Send ``payload`` to the GUI thread's ``posted`` signal (callable from the worker)."""
        self._relay.carried.emit(payload)

    def cancel(self) -> None:
        """Ask the running job to stop (its backend raises ``Cancelled`` soon after)."""
        if self._worker is None:
            return
        self._cancel.set()
        self._worker.quit()

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the job has ended (scripts, tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.busy:
            if deadline is not None and time.monotonic() > deadline:
                return False
            loop = QEventLoop()
            self.stopped.connect(loop.quit)
            QTimer.singleShot(50, loop.quit)
            loop.exec()
            self.stopped.disconnect(loop.quit)
        return True

    def _on_error(self, exc: BaseException) -> None:
        if not (isinstance(exc, Cancelled) or self._cancel.is_set()):
            self.failed.emit(exc)

    def _on_finished(self) -> None:
        self._worker = None
        if self._cancel.is_set():
            self.cancelled.emit()
        self.stopped.emit()


class _Relay(QObject):
    """Lives in the GUI thread; its signals, emitted from the worker, are queued to the GUI."""

    relayed = Signal(float, str)
    carried = Signal(object)
