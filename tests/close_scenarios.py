"""Close napari while a plugin job runs: one scenario per process (see test_close_while_working.py).

Run as ``python tests/close_scenarios.py SCENARIO WORK_DIR`` with a display (Xvfb). Each
scenario opens a real napari window, starts real work in a napari-acs dock widget, then
closes the viewer (or quits the application) while the work is still running, and
prints ``closed while busy: <what>`` for every job that was running at that moment.
The process must then end by itself with exit code 0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_acs.io.sample import sample_case_path

WIDGETS = ("Load BraTS case", "Segment", "Fine-tune", "Classify MGMT", "Orthogonal views")


def process_until(condition, timeout: float, what: str) -> None:
    """Run the Qt event loop until ``condition()`` holds; exit 3 if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            print(f"timed out waiting for {what}", file=sys.stderr)
            sys.exit(3)
        QApplication.processEvents()
        time.sleep(0.01)


def dock(viewer, name: str):
    return viewer.window.add_plugin_dock_widget("napari-acs", name)[1]


def close_while_busy(viewer, jobs: dict) -> None:
    """Close ``viewer``; ``jobs`` maps a name to a runner that must still be busy."""
    for name, runner in jobs.items():
        if not runner.busy:
            print(f"{name} had already ended before the close", file=sys.stderr)
            sys.exit(4)
    viewer.close()
    for name in jobs:
        print(f"closed while busy: {name}", flush=True)


def segmenting_viewer(tta: bool = True):
    """A viewer with the sample case and a Segment widget running on the CPU (demo model)."""
    viewer = napari.Viewer(show=True)
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    widget = dock(viewer, "Segment")
    widget.choice.backend.wait(300)
    widget.tta.setChecked(tta)
    widget.run(device="cpu")
    process_until(lambda: widget.panel.progress.value() > 0, 120, "segmentation progress")
    return viewer, widget


def dock_and_close(work: Path) -> None:
    """Every widget docked, the viewer closed within 0.1 s (the backend warm-up still running)."""
    viewer = napari.Viewer(show=True)
    widgets = {name: dock(viewer, name) for name in WIDGETS}
    jobs = {"Segment warm-up": widgets["Segment"].choice.backend, "Fine-tune warm-up": widgets["Fine-tune"].backend}
    close_while_busy(viewer, jobs)  # at once: both warm-ups (importing torch) are still running


def close_loading(work: Path) -> None:
    """The Load widget reading the full-size sample case in the background."""
    viewer = napari.Viewer(show=True)
    widget = dock(viewer, "Load BraTS case")
    widget.open_case(str(sample_case_path()))
    close_while_busy(viewer, {"loading a case": widget.runner})


def close_segmenting(work: Path) -> None:
    """Segment with test-time augmentation on the full-size case, closed a few seconds in."""
    viewer, widget = segmenting_viewer()
    close_while_busy(viewer, {"segmentation": widget.runner})


def close_dock_segmenting(work: Path) -> None:
    """The Segment dock widget is closed while it runs; the viewer goes on, then is closed."""
    viewer, widget = segmenting_viewer()
    runner = widget.runner
    viewer.window.remove_dock_widget(widget)
    print("dock closed while busy: segmentation" if runner.busy else "segmentation had ended", flush=True)
    from napari_acs._napari._workers import _RUNNING

    process_until(lambda: not _RUNNING, 30, "the closed widget's job to stop")  # cancelled, not finished
    end = time.monotonic() + 1
    process_until(lambda: time.monotonic() > end, 10, "the viewer to go on")
    assert not any(layer.name.endswith("prediction") for layer in viewer.layers), "a closed widget added a layer"
    viewer.layers.selection.active = viewer.layers[0]  # the viewer still works
    print("the closed widget's job stopped", flush=True)
    viewer.close()


def quit_segmenting(work: Path) -> None:
    """The application quits (File > Exit, Ctrl+Q) while Segment runs, from napari's event loop."""
    from qtpy.QtCore import QTimer

    viewer, widget = segmenting_viewer()
    QTimer.singleShot(200, lambda: (print("quit while busy: segmentation", flush=True)
                                    if widget.runner.busy else None, QApplication.quit()))
    napari.run()


def close_classifying(work: Path) -> None:
    """Classify MGMT on the full-size case with a real (untrained) classification checkpoint."""
    from napari_acs.models.checkpoint import save_checkpoint
    from napari_acs.models.factory import create_model

    path = save_checkpoint(create_model("tf_efficientnet_lite0", task="classification"),
                           work / "mgmt.safetensors", task="classification", input_size=[64, 64, 64])
    viewer = napari.Viewer(show=True)
    viewer.open(str(sample_case_path()), plugin="napari-acs")
    widget = dock(viewer, "Classify MGMT")
    widget.choice.backend.wait(300)
    widget.choice.choose_checkpoint(path)
    process_until(lambda: widget.choice.ready(), 60, "the checkpoint's card")
    widget.panel.select_device("cpu")
    widget.run()
    close_while_busy(viewer, {"classification": widget.panel.runner})


def close_finetuning(work: Path) -> None:
    """Fine-tuning on a small cohort, closed during epoch 2: it must stop and save as Stop does."""
    from napari_acs.synthetic import make_cohort

    cohort = make_cohort(work / "cohort", 3, shape=(48, 48, 40), workers=1)
    viewer = napari.Viewer(show=True)
    widget = dock(viewer, "Fine-tune")
    widget.backend.wait(300)
    widget.cohort.set_text(str(cohort[0].parent))
    widget.out_dir.set_text(str(work / "run"))
    widget.epochs.setValue(50)
    widget.patch.setValue(32)
    widget.steps.setValue(4)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    events: list[dict] = []
    widget.runner.posted.connect(events.append)
    widget.start()
    process_until(lambda: any(e["event"] == "step" and e["epoch"] == 2 for e in events), 300, "epoch 2")
    close_while_busy(viewer, {"fine-tuning": widget.runner})


def two_viewers(work: Path) -> None:
    """Two viewers in one process: one is closed while the other segments; the other finishes."""
    other = napari.Viewer(show=True)
    other.open(str(sample_case_path()), plugin="napari-acs")
    dock(other, "Segment")
    viewer, widget = segmenting_viewer(tta=False)
    other.close()
    assert widget.wait(600), "the remaining viewer's segmentation did not end"
    assert widget.result is not None, widget.message.text()
    print(f"remaining viewer segmented: WT {widget.result.volumes_ml['WT']:.1f} mL", flush=True)
    viewer.close()


SCENARIOS = {f.__name__: f for f in (dock_and_close, close_loading, close_segmenting, close_dock_segmenting,
                                     quit_segmenting,
                                     close_classifying, close_finetuning, two_viewers)}

if __name__ == "__main__":
    name, work_dir = sys.argv[1], Path(sys.argv[2])
    SCENARIOS[name](work_dir)
