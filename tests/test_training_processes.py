"""Fine-tuning across processes: a run killed with SIGKILL resumes from its last epoch, and
``torchrun`` with two CPU processes (Gloo) ends with the same weights on both ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from napari_acs.synthetic import make_cohort
from napari_acs.training import FinetuneConfig, finetune, read_history

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FLAGS = ["--patch-size", "32", "--batch-size", "2", "--steps-per-epoch", "2", "--val-fraction", "0.25",
         "--no-progress"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, 4, seed=1, shape=(48, 48, 40), workers=1)
    return root


def _saved_epoch(out: Path) -> int | None:
    path = out / "training_state.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sigkill_loses_at_most_one_epoch_and_resume_finishes(cohort, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "napari_acs.training", str(cohort), "--out", str(out), "--epochs", "3", *FLAGS]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120  # generous: only "does not hang"
    while _saved_epoch(out) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{output}"
    killed_at = _saved_epoch(out)
    assert killed_at is not None and 1 <= killed_at < 3
    before = read_history(out / "history.csv")

    events = []
    resumed = finetune(FinetuneConfig(cohort, out, patch_size=32, batch_size=2, epochs=3, steps_per_epoch=2,
                                      val_fraction=0.25, resume=True), on_event=events.append)
    assert events[0]["start_epoch"] == killed_at + 1
    assert resumed.epochs_completed == 3 and not resumed.cancelled
    after = read_history(out / "history.csv")
    assert [row["epoch"] for row in after] == [1, 2, 3]
    assert _saved_epoch(out) == 3
    # the epochs saved before the kill were kept, not re-run (their timings are unchanged)
    for old, new in zip(before[:killed_at], after):
        assert new["seconds"] == old["seconds"] and new["train_loss"] == old["train_loss"]


TORCHRUN_SCRIPT = """
import json, os, sys
import torch
from napari_acs.training import FinetuneConfig, finetune

config = FinetuneConfig(sys.argv[1], sys.argv[2], patch_size=32, batch_size=2, epochs=1, steps_per_epoch=2,
                        val_fraction=0.5)
result = finetune(config)
rank = int(os.environ["RANK"])
torch.save(result.model.state_dict(), os.path.join(sys.argv[3], f"rank{rank}.pt"))
report = {"rank": rank, "world": int(os.environ["WORLD_SIZE"]),
          "val_dice_mean": result.history[-1]["val_dice_mean"], "train_loss": result.history[-1]["train_loss"]}
with open(os.path.join(sys.argv[3], f"rank{rank}.json"), "w") as stream:
    json.dump(report, stream)
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes_agree_on_the_weights(cohort, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT))
    out, reports = tmp_path / "run", tmp_path / "ranks"
    reports.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*torchrun, str(script), str(cohort), str(out), str(reports)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # the same weights and batch-norm statistics on both ranks: each rank saw other patches, so
    # unsynchronised replicas would differ by about a learning rate (1e-3), far above the tolerance
    weights = [torch.load(reports / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=1e-6, atol=1e-7, msg=key)
    # losses and validation (one case per rank) are gathered: every rank reports the same numbers
    assert ranks[1]["train_loss"] == pytest.approx(ranks[0]["train_loss"], rel=1e-6)
    assert ranks[1]["val_dice_mean"] == pytest.approx(ranks[0]["val_dice_mean"], rel=1e-6)
    # only rank 0 writes the run folder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.safetensors", "config.json", "history.csv", "last.safetensors", "training_state.pt"]
    )
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
