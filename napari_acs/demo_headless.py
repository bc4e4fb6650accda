"""Headless demo: segment the sample case, print Dice, volumes and time."""

from __future__ import annotations

import time

from napari_acs.io.sample import sample_case_path


def run_headless() -> int:
    """Segment the shipped sample case with the default model; exit code 0 on success."""
    import torch

    from napari_acs.inference import segment
    from napari_acs.io import load_case
    from napari_acs.metrics import brats_metrics
    from napari_acs.models.select import select_model

    start = time.perf_counter()
    case = load_case(sample_case_path())
    loaded = time.perf_counter()
    selected = select_model()
    print(f"case: {case.case_id} {case.shape} voxels, spacing {case.spacing} mm")
    print(f"model: {selected.description}")
    print(f"device: cpu, {torch.get_num_threads()} threads" if not torch.cuda.is_available() else "device: cuda")
    built = time.perf_counter()
    labels = segment(case, selected.model)
    done = time.perf_counter()
    metrics = brats_metrics(labels, case.label, case.spacing, convention=case.convention)
    print(f"{'region':<8}{'Dice':>8}{'HD95 mm':>10}{'pred mL':>10}{'ref mL':>10}")
    for region, m in metrics.items():
        print(f"{region:<8}{m['dice']:>8.3f}{m['hd95']:>10.2f}{m['volume_ml_pred']:>10.1f}{m['volume_ml_ref']:>10.1f}")
    print(f"time: load {loaded - start:.1f} s, model {built - loaded:.1f} s, segment {done - built:.1f} s")
    if not selected.trained:
        print("NOTE: the model is UNTRAINED (the demo checkpoint is missing from sample_data/demo_model/): "
              "the Dice above is meaningless.")
    return 0
