"""Closing napari while a plugin job runs ends the process cleanly (exit code 0, no traceback).

Each scenario of ``close_scenarios.py`` runs in its own Python process on the Xvfb display
pytest-xvfb started, as a user's napari session would: an abort or a segmentation fault
there cannot take the test run down, and is seen in the exit code and stderr. The module's
scenarios run two at a time (:class:`ScenarioPool`): most of a scenario is one process's
start-up (Python, Qt, torch), so two share the 2 cores well (30.5 -> 20.4 s for two).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("close_scenarios.py")
CRASH_SIGNS = ("Traceback", "Aborted", "Segmentation fault", "Fatal Python error", "core dumped")
PARALLEL = 2
TIMEOUT_S = 600
#: The scenario of each test that is not parametrized by one.
SCENARIO_OF = {
    "test_closing_the_dock_widget_while_segmenting_leaves_the_viewer_working": "close_dock_segmenting",
    "test_quitting_the_app_while_segmenting_exits_cleanly": "quit_segmenting",
    "test_closing_while_fine_tuning_stops_and_saves_where_it_got_to": "close_finetuning",
    "test_closing_one_viewer_leaves_the_other_segmenting": "two_viewers",
}


def scenario_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params["name"] if callspec is not None else SCENARIO_OF.get(item.originalname)


class ScenarioPool:
    """The scenarios of the selected tests, started in test order, at most ``PARALLEL`` at once,
    each in its own work folder with its output in files (no pipe to fill)."""

    def __init__(self, names: list[str], root: Path) -> None:
        self.pending, self.root = list(names), root
        self.running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
        self.done: dict[str, tuple[int, str, str, Path]] = {}

    def _start(self, name: str) -> None:
        work = self.root / name
        work.mkdir()
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
            process = subprocess.Popen([sys.executable, str(SCRIPT), name, str(work)], stdout=out, stderr=err,
                                       text=True, env=env, cwd=work)
        self.running[name] = (process, work, time.monotonic())

    def _fill(self) -> None:
        while self.pending and len(self.running) < PARALLEL:
            self._start(self.pending.pop(0))

    def result(self, name: str) -> tuple[int, str, str, Path]:
        """(exit code, stdout, stderr, work folder) of ``name``, once its process has ended."""
        if name in self.pending:  # asked out of order: start it now
            self.pending.remove(name)
            self._start(name)
        while name not in self.done:
            self._fill()
            for other, (process, work, started) in list(self.running.items()):
                if process.poll() is None and time.monotonic() - started > TIMEOUT_S:
                    process.kill()
                    process.wait()
                if process.poll() is not None:
                    del self.running[other]
                    self.done[other] = (process.returncode, (work / "stdout.txt").read_text(),
                                        (work / "stderr.txt").read_text(), work)
            time.sleep(0.05)
        self._fill()
        return self.done[name]

    def close(self) -> None:
        for process, _, _ in self.running.values():
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    names = [name for item in request.session.items
             if item.module is request.module and (name := scenario_of(item)) is not None]
    pool = ScenarioPool(names, tmp_path_factory.mktemp("close_scenarios"))
    yield pool
    pool.close()


def run_scenario(scenarios: ScenarioPool, name: str) -> tuple[str, Path]:
    """Stdout and work folder of a scenario that ended with exit code 0 and no crash."""
    code, stdout, stderr, work = scenarios.result(name)
    print(stdout[-2000:], stderr[-4000:], sep="\n")
    crashes = [sign for sign in CRASH_SIGNS if sign in stderr]
    assert code == 0 and not crashes, (code, crashes, stderr[-4000:])
    return stdout, work


@pytest.mark.parametrize("name, jobs", [
    ("dock_and_close", ["Segment warm-up", "Fine-tune warm-up"]),
    ("close_loading", ["loading a case"]),
    ("close_segmenting", ["segmentation"]),
    ("close_classifying", ["classification"]),
])
def test_closing_the_viewer_while_a_job_runs_exits_cleanly(name: str, jobs: list[str], scenarios) -> None:
    stdout, _ = run_scenario(scenarios, name)
    for job in jobs:
        assert f"closed while busy: {job}" in stdout


@pytest.mark.slow
def test_closing_the_dock_widget_while_segmenting_leaves_the_viewer_working(scenarios) -> None:
    stdout, _ = run_scenario(scenarios, "close_dock_segmenting")
    assert "dock closed while busy: segmentation" in stdout
    assert "the closed widget's job stopped" in stdout


@pytest.mark.slow
def test_quitting_the_app_while_segmenting_exits_cleanly(scenarios) -> None:
    stdout, _ = run_scenario(scenarios, "quit_segmenting")
    assert "quit while busy: segmentation" in stdout


@pytest.mark.slow
def test_closing_while_fine_tuning_stops_and_saves_where_it_got_to(scenarios) -> None:
    from napari_acs.models.checkpoint import load_model

    stdout, work = run_scenario(scenarios, "close_finetuning")
    assert "closed while busy: fine-tuning" in stdout
    run = work / "run"
    stopped = json.loads((run / "stopped.json").read_text())
    assert stopped["reason"] in {"the window was closed", "napari-acs is closing"}
    assert stopped["epoch"] == 2 and stopped["epochs_completed"] == 1 and stopped["steps_done_in_epoch"] >= 1
    model = load_model(run / stopped["checkpoint"])  # usable: it loads and names the stop
    assert model.checkpoint_meta["training"]["cancelled_during_epoch"] == 2
    assert not list(run.glob("*.tmp*")), "a temporary file was left behind"


@pytest.mark.slow
def test_closing_one_viewer_leaves_the_other_segmenting(scenarios) -> None:
    stdout, _ = run_scenario(scenarios, "two_viewers")
    assert "remaining viewer segmented: WT" in stdout
