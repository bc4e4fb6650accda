"""How long the napari GUI thread stalls while Segment and Fine-tune run (issue 15).

A 20 ms timer on the GUI thread records when it fires; a gap much longer than 20 ms
is time the window could not repaint or react. Measured in a real napari window
(run under Xvfb), after the backend warm-up, on the CPU:

* ``segment``: the Segment widget on the full-size sample case (demo model, no TTA),
  from the Run click until the result layer is shown and mirrored, ``--repeats`` times
  (the prediction layer is removed between runs, so each run adds it anew; the first
  run also builds the model);
* ``finetune``: the Fine-tune widget on the two full-size sample cases (patch 96,
  batch 2, 4 steps an epoch, 2 epochs), loading the cases included.

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/bench_gui_stall.py --repeats 3

Prints one table row per run: largest gap, 99th percentile gap, run time; and the CPU.
"""

from __future__ import annotations

import argparse
import gc
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TICK_MS = 20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                return line.split(":", 1)[1].strip() + (" (AVX-512)" if "avx512f" in flags else " (no AVX-512)")
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class Heartbeat:
    """A GUI-thread timer that records when it fires."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self, split: float | None = None) -> dict[str, float]:
        """Largest and 99th-percentile gap (ms); with ``split`` (a time), the largest before and after it."""
        self.timer.stop()
        self.ticks.append(time.perf_counter())
        ticks = np.asarray(self.ticks)
        gaps = np.diff(ticks) * 1000
        row = {"max_ms": float(gaps.max()), "p99_ms": float(np.percentile(gaps, 99)),
               "seconds": float(ticks[-1] - ticks[0])}
        if split is not None:
            ends = ticks[1:]
            row["before_ms"] = float(gaps[ends <= split].max(initial=0))
            row["after_ms"] = float(gaps[ends > split].max(initial=0))
        return row


def wait_until(condition, timeout: float) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not finish in time")
        QApplication.processEvents()
        time.sleep(0.005)


def settle(seconds: float) -> None:
    """Keep the event loop running for ``seconds``."""
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() > end, seconds + 1)


def bench_segment(viewer, repeats: int) -> list[dict[str, float]]:
    from napari_acs.io.sample import sample_case_path

    viewer.open(str(sample_case_path()), plugin="napari-acs")
    _, widget = viewer.window.add_plugin_dock_widget("napari-acs", "Segment")
    _, ortho = viewer.window.add_plugin_dock_widget("napari-acs", "Orthogonal views")
    widget.choice.backend.wait(300)
    widget.panel.select_device("cpu")
    rows = []
    for _ in range(repeats):
        existing = widget.prediction_layer()
        if existing is not None:
            viewer.layers.remove(existing)
        gc.collect()
        settle(1.0)
        shown: list[float] = []

        def on_result(result, shown=shown) -> None:
            shown.append(time.perf_counter())

        widget.runner.succeeded.connect(on_result)
        beat = Heartbeat()
        beat.start()
        widget.run_button.click()
        wait_until(lambda: bool(shown) and not widget.runner.busy, 600)
        settle(0.5)  # the layer's deferred set-up and the orthogonal views' mirror
        row = beat.stop(split=shown[0])
        widget.runner.succeeded.disconnect(on_result)
        rows.append({**row, "what": "segment"})
    viewer.window.remove_dock_widget(ortho)
    return rows


def bench_finetune(viewer, repeats: int) -> list[dict[str, float]]:
    from napari_acs.io.sample import sample_data_dir

    _, widget = viewer.window.add_plugin_dock_widget("napari-acs", "Fine-tune")
    widget.backend.wait(300)
    rows = []
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="bench_gui_ft_"))
        try:
            widget.cohort.set_text(str(sample_data_dir()))
            widget.out_dir.set_text(str(out / "run"))
            widget.epochs.setValue(2)
            widget.patch.setValue(96)
            widget.steps.setValue(4)
            widget.device.setCurrentIndex(widget.device.findData("cpu"))
            gc.collect()
            settle(1.0)
            beat = Heartbeat()
            beat.start()
            widget.start()
            wait_until(lambda: not widget.runner.busy, 900)
            settle(0.5)
            row = beat.stop()
            if widget.checkpoint is None:
                raise RuntimeError(f"fine-tuning did not finish: {widget.message.text()}")
            rows.append({**row, "what": "finetune"})
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--what", nargs="+", default=["segment", "finetune"], choices=["segment", "finetune"],
                        help="which widgets to measure (default both)")
    args = parser.parse_args()

    import napari
    import torch

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    rows = []
    if "segment" in args.what:
        rows += bench_segment(viewer, args.repeats)
    if "finetune" in args.what:
        rows += bench_finetune(viewer, args.repeats)
    viewer.close()
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads, tick {TICK_MS} ms")
    print("| run | largest gap (ms) | p99 gap (ms) | largest while computing / showing the result (ms) | run (s) |")
    print("|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        split = f"{row['before_ms']:.0f} / {row['after_ms']:.0f}" if "before_ms" in row else "-"
        print(f"| {row['what']} {i} | {row['max_ms']:.0f} | {row['p99_ms']:.0f} | {split} | {row['seconds']:.1f} |")


if __name__ == "__main__":
    main()
