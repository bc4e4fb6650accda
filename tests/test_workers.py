"""The GUI's task runner: what a job reports arrives on the GUI thread, in order; cancel; priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from napari_acs._napari._workers import JOB_NICENESS, TaskRunner
from napari_acs.progress import check_cancel


def test_progress_posts_and_result_arrive_in_order_on_the_gui_thread(qtbot) -> None:
    runner = TaskRunner()
    seen: list = []
    gui = threading.get_ident()
    runner.progressed.connect(lambda f, m: seen.append(("progress", f, m, threading.get_ident() == gui)))
    runner.posted.connect(lambda p: seen.append(("post", p, threading.get_ident() == gui)))
    runner.succeeded.connect(lambda r: seen.append(("result", r)))
    runner.stopped.connect(lambda: seen.append(("stopped",)))

    def job(progress, cancel):
        progress(0.5, "half")
        runner.post({"event": "step"})
        if sys.platform.startswith("linux"):
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return JOB_NICENESS

    runner.start(job)
    assert runner.busy
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(job)
    assert runner.wait(60)
    assert seen[:2] == [("progress", 0.5, "half", True), ("post", {"event": "step"}, True)]
    assert seen[2][0] == "result" and seen[2][1] >= JOB_NICENESS  # the job ran at a lower priority
    assert seen[3:] == [("stopped",)]


def test_failure_and_cancel_are_reported_not_raised(qtbot) -> None:
    runner = TaskRunner()
    outcome: list = []
    runner.failed.connect(lambda exc: outcome.append(("failed", str(exc))))
    runner.cancelled.connect(lambda: outcome.append(("cancelled",)))
    runner.succeeded.connect(lambda r: outcome.append(("result", r)))
    runner.start(lambda progress, cancel: 1 / 0)
    assert runner.wait(60)
    started = threading.Event()

    def stoppable(progress, cancel):
        started.set()
        while True:
            check_cancel(cancel, "test job")
            cancel.wait(0.01)

    runner.start(stoppable)
    assert started.wait(30)
    runner.cancel()
    assert runner.wait(60)
    assert outcome == [("failed", "division by zero"), ("cancelled",)]
