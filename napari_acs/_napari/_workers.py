"""Backend calls off the GUI thread: progress relayed to the GUI, Cancel, one task at a time.

The backend's long functions take ``progress(fraction, message)`` and ``cancel``
(see :mod:`napari_acs.progress`) and run synchronously, so each job runs in a plain
Python thread. The thread never touches a Qt object: progress, posted payloads and
the outcome go into a thread-safe queue that a timer on the GUI thread drains
(every :data:`POLL_MS`). So a widget, or the whole viewer, may be deleted while a
job runs (napari closed mid-segmentation): its timer dies with it, the job is told
to stop (its cancel event is set when the runner is destroyed), and what the job
still reports goes nowhere. At interpreter exit, jobs that are still running are
told to stop and awaited (:func:`stop_all_tasks`), so the process ends cleanly.
A fine-tuning job treats the stop like its Stop button: it saves where it got to.
Job threads run at a lower CPU priority (Linux; :data:`JOB_NICENESS`), so the GUI
thread gets a core whenever it has work, however busy the job keeps the CPUs.
Before a job starts, Triton is kept out of the process where it would crash it
(:func:`block_triton_after_mesa`).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, QEventLoop, QObject, QTimer, Signal

from napari_acs.progress import CancelEvent, Cancelled

Job = Callable[[Callable[[float, str], None], threading.Event], Any]
#: How often the GUI thread collects what the running job reported (ms).
POLL_MS = 30
#: Nice value of job threads on Linux (0..19, higher is lower priority; the environment
#: variable NAPARI_ACS_JOB_NICE overrides it, 0 to turn it off): benchmarks/bench_gui_stall.py.
JOB_NICENESS = 10
#: How long interpreter exit waits for a stopped job to end (s): a fine-tuning step and its save.
EXIT_WAIT_S = 120.0

_PROGRESS, _POST, _RETURNED, _FAILED = "progress", "post", "returned", "failed"


class Task:
    """One job in its own daemon thread; reports through :attr:`outbox` only (no Qt)."""

    def __init__(self, job: Job) -> None:
        self.cancel = CancelEvent()
        self.outbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._job = job
        self.thread = threading.Thread(target=self._run, name="napari-acs task", daemon=True)

    def progress(self, fraction: float, message: str) -> None:
        self.outbox.put((_PROGRESS, (fraction, message)))

    def post(self, payload: Any) -> None:
        self.outbox.put((_POST, payload))

    def _run(self) -> None:
        _lower_priority()
        try:
            self.outbox.put((_RETURNED, self._job(self.progress, self.cancel)))
        except BaseException as exc:  # noqa: BLE001  (reported to the GUI, never raised in a thread)
            self.outbox.put((_FAILED, exc))
        finally:
            _RUNNING.discard(self)


def _lower_priority() -> None:
    """Give the calling job thread (and the torch threads it starts) a lower CPU priority (Linux).

    The GUI thread then gets a core as soon as it has work (a repaint, a click), however
    busy the job keeps the CPUs: the job slows only by what the GUI actually uses.
    """
    if sys.platform.startswith("linux"):
        try:
            niceness = int(os.environ.get("NAPARI_ACS_JOB_NICE", JOB_NICENESS))
            tid = threading.get_native_id()
            if niceness > os.getpriority(os.PRIO_PROCESS, tid):  # never raise a priority
                os.setpriority(os.PRIO_PROCESS, tid, niceness)  # this thread only
        except (OSError, ValueError):
            pass


#: Jobs whose thread is running, so that interpreter exit can stop and await them.
_RUNNING: set[Task] = set()


def stop_all_tasks(reason: str = "napari-acs is closing", timeout: float = EXIT_WAIT_S) -> None:
    """Tell every running job to stop and wait for each (at most ``timeout`` s in all)."""
    tasks = list(_RUNNING)
    for task in tasks:
        task.cancel.set(reason)
    deadline = time.monotonic() + timeout
    for task in tasks:
        task.thread.join(max(0.0, deadline - time.monotonic()))


# Registered at import, so it runs before napari's and Qt's own exit handlers (atexit is LIFO
# and napari's Qt modules are imported before any plugin widget).
atexit.register(stop_all_tasks)


def _abandon(tasks: list[Task]) -> None:
    """The runner was deleted (its widget or viewer closed): its job stops and reports to nobody."""
    for task in tasks:
        task.cancel.set("the window was closed")


class TaskRunner(QObject):
    """Runs one backend job at a time in a thread and reports back on the GUI thread.

    ``job(progress, cancel)`` runs in the thread and may call :meth:`post` with any
    object. Signals (GUI thread): ``progressed(fraction, message)``, ``posted(object)``,
    ``succeeded(result)`` (not after Cancel), ``failed(exception)``, ``cancelled()``,
    then ``stopped()`` once the job has ended.
    """

    progressed = Signal(float, str)
    posted = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    stopped = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._task: Task | None = None
        self._current: list[Task] = []  # shared with the destroyed handler, which outlives self
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)
        current = self._current
        self.destroyed.connect(lambda *_: _abandon(current))

    @property
    def busy(self) -> bool:
        """A job is running (or finishing after Cancel)."""
        return self._task is not None

    def start(self, job: Job) -> None:
        """Start ``job`` in a thread; refused while another job runs."""
        if self.busy:
            raise RuntimeError("a task is already running; cancel it or wait for it to end")
        block_triton_after_mesa()  # jobs may import torch for the first time
        task = Task(job)
        self._task = task
        self._current[:] = [task]
        _RUNNING.add(task)
        task.thread.start()
        self._timer.start()

    def post(self, payload: Any) -> None:
        """Send ``payload`` to the GUI thread's ``posted`` signal (callable from the job's thread)."""
        if self._task is not None:
            self._task.post(payload)

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Ask the running job to stop (its backend raises ``Cancelled`` soon after)."""
        if self._task is not None:
            self._task.cancel.set(reason)

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

    def _drain(self) -> None:
        task = self._task
        if task is None:
            self._timer.stop()
            return
        while True:
            try:
                kind, value = task.outbox.get_nowait()
            except queue.Empty:
                return
            if kind == _PROGRESS:
                self.progressed.emit(*value)
            elif kind == _POST:
                self.posted.emit(value)
            else:
                self._finish(task, kind, value)
                return

    def _finish(self, task: Task, kind: str, value: Any) -> None:
        self._task = None
        self._current.clear()
        self._timer.stop()
        task.thread.join()  # it has reported its outcome: only its last lines are left
        if kind == _RETURNED:
            if task.cancel.is_set():
                self.cancelled.emit()
            else:
                self.succeeded.emit(value)
        elif task.cancel.is_set():
            self.cancelled.emit()
        elif not isinstance(value, Cancelled):
            self.failed.emit(value)
        self.stopped.emit()


class StopsJobsWhenClosed:
    """Mixin for dock widgets (before the Qt class): closing the panel stops the widget's jobs.

    napari's dock "x" (``Window.remove_dock_widget``) takes the widget out of its dock
    without deleting it; every :class:`TaskRunner` under the widget is then told to stop
    (fine-tuning saves where it got to), and their results are not shown.
    """

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            for runner in self.findChildren(TaskRunner):
                runner.cancel("the panel was closed")
        return super().event(event)


# --------------------------------------------------------------------------- Triton and Mesa
#
# Keep Triton out of a napari process whose OpenGL runs on Mesa (llvmpipe, radeonsi...).
#
# Mesa's drivers map ``libLLVM``; Triton's ``libtriton.so`` exports its own LLVM with the
# same symbol names (triton-lang/triton#1236; the same clash with TensorFlow's LLVM is
# tensorflow/tensorflow#124205), and loading it after Mesa crashes the process: a
# segmentation fault in Triton's module initialisation, reproduced under Xvfb with
# llvmpipe and triton 3.8 (``import triton`` after ``napari.Viewer(show=True)``).
# torch imports Triton lazily (``torch._dynamo`` and ``torch.utils.flop_counter``, which
# torchvision and timm pull in) only to check that it is there; napari-acs compiles no
# kernels. So, only when Triton is installed, ``libLLVM`` is already mapped and Triton is
# not imported yet, Triton is marked unavailable (``import triton`` raises ``ImportError``
# and torch carries on without it).
#
# This is process-wide by nature (a crash of the whole process is what it prevents). The
# locked environment of ``make`` does not install Triton (requirements/lock.txt), so there
# it never acts; it protects users whose torch brought Triton along.

MAPS = Path("/proc/self/maps")


def llvm_is_mapped() -> bool:
    """True when a ``libLLVM`` shared library is loaded in this process (Linux only)."""
    try:
        return "libLLVM" in MAPS.read_text()
    except OSError:  # no /proc (macOS, Windows): no clash known there
        return False


def block_triton_after_mesa() -> bool:
    """Mark Triton unavailable if it is installed, not imported, and Mesa's LLVM is loaded; True if blocked."""
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None or not llvm_is_mapped():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # import raises ImportError
    return True
