"""Closing napari while a plugin job runs ends the process cleanly (exit code 0, no traceback).

Each scenario of ``close_scenarios.py`` runs in its own Python process on the Xvfb display
pytest-xvfb started, as a user's napari session would: an abort or a segmentation fault
there cannot take the test run down, and is seen in the exit code and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("close_scenarios.py")
CRASH_SIGNS = ("Traceback", "Aborted", "Segmentation fault", "Fatal Python error", "core dumped")


def run_scenario(name: str, work: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), name, str(work)], capture_output=True, text=True,
                            timeout=600, env=env, cwd=work)
    print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
    crashes = [sign for sign in CRASH_SIGNS if sign in result.stderr]
    assert result.returncode == 0 and not crashes, (result.returncode, crashes, result.stderr[-4000:])
    return result


@pytest.mark.parametrize("name, jobs", [
    ("dock_and_close", ["Segment warm-up", "Fine-tune warm-up"]),
    ("close_loading", ["loading a case"]),
    ("close_segmenting", ["segmentation"]),
    ("close_classifying", ["classification"]),
])
def test_closing_the_viewer_while_a_job_runs_exits_cleanly(name: str, jobs: list[str], tmp_path: Path) -> None:
    result = run_scenario(name, tmp_path)
    for job in jobs:
        assert f"closed while busy: {job}" in result.stdout


@pytest.mark.slow
def test_closing_the_dock_widget_while_segmenting_leaves_the_viewer_working(tmp_path: Path) -> None:
    result = run_scenario("close_dock_segmenting", tmp_path)
    assert "dock closed while busy: segmentation" in result.stdout
    assert "the closed widget's job stopped" in result.stdout


@pytest.mark.slow
def test_quitting_the_app_while_segmenting_exits_cleanly(tmp_path: Path) -> None:
    result = run_scenario("quit_segmenting", tmp_path)
    assert "quit while busy: segmentation" in result.stdout


@pytest.mark.slow
def test_closing_while_fine_tuning_stops_and_saves_where_it_got_to(tmp_path: Path) -> None:
    from napari_acs.models.checkpoint import load_model

    result = run_scenario("close_finetuning", tmp_path)
    assert "closed while busy: fine-tuning" in result.stdout
    run = tmp_path / "run"
    stopped = json.loads((run / "stopped.json").read_text())
    assert stopped["reason"] in {"the window was closed", "napari-acs is closing"}
    assert stopped["epoch"] == 2 and stopped["epochs_completed"] == 1 and stopped["steps_done_in_epoch"] >= 1
    model = load_model(run / stopped["checkpoint"])  # usable: it loads and names the stop
    assert model.checkpoint_meta["training"]["cancelled_during_epoch"] == 2
    assert not list(run.glob("*.tmp*")), "a temporary file was left behind"


@pytest.mark.slow
def test_closing_one_viewer_leaves_the_other_segmenting(tmp_path: Path) -> None:
    result = run_scenario("two_viewers", tmp_path)
    assert "remaining viewer segmented: WT" in result.stdout
