"""Fine-tuning backend: CSV matching, split, augmentation, sampling, and real (tiny) training runs.

Runs use a generated cohort of 48 x 48 x 40 cases, 32^3 patches and the
tf_efficientnet_lite0 preset with its offline ImageNet weights; one torch thread
(much faster than two on a shared, loaded CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from napari_acs.models.checkpoint import load_checkpoint, load_model
from napari_acs.progress import CancelEvent
from napari_acs.synthetic import make_cohort
from napari_acs.training import (
    FinetuneConfig,
    LabelsCSVError,
    compare,
    finetune,
    match_labels,
    read_history,
    read_mgmt_csv,
    subject_number,
)
from napari_acs.training.augment import Augmentation, augment
from napari_acs.training.comparison import summary_rows
from napari_acs.training.config import ARMS
from napari_acs.training.cli import add_compare_parser, add_finetune_parser, config_from_args
from napari_acs.training.cohort import SegmentationCase, split_subjects
from napari_acs.training.datasets import SegmentationPatches
from napari_acs.training.evaluation import auc_interval, binary_metrics
from napari_acs.training.losses import RegionLoss, soft_dice_loss
from napari_acs.training.plots import COLOURS, LEGEND_FRAME, line_plot

SMALL = {"model": "tf_efficientnet_lite0", "patch_size": 32, "batch_size": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Six synthetic BraTS 2021 cases of 48 x 48 x 40 voxels, with train_labels.csv."""
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, 6, seed=0, shape=(48, 48, 40), workers=1)
    return root


# --------------------------------------------------------------------------- labels CSV


def test_subject_numbers_ignore_zero_padding():
    assert subject_number("BraTS2021_00012") == 12
    assert subject_number("00012") == 12
    assert subject_number("12") == 12
    assert subject_number("BraTS-GLI-00012-000") == 12
    assert subject_number("patient_a") is None


def test_csv_matches_padded_and_unpadded_ids_and_reports_the_rest(tmp_path):
    csv_path = tmp_path / "train_labels.csv"
    csv_path.write_text("BraTS21ID,MGMT_value\n12,1\n00013,0\n00014,1\n999,0\n")
    labels = read_mgmt_csv(csv_path)
    assert labels == {"12": 1, "00013": 0, "00014": 1, "999": 0}
    cases = ["BraTS2021_00012", "BraTS2021_00013", "case_x", "BraTS2021_00077"]
    folders = ["a", "b", "00014", "c"]  # case_x sits in RSNA-style folder 00014
    matched = match_labels(labels, cases, folders)
    assert matched.labels == {"BraTS2021_00012": 1, "BraTS2021_00013": 0, "case_x": 1}
    assert matched.rows_without_case == ["999"]
    assert matched.cases_without_row == ["BraTS2021_00077"]
    lines = matched.warnings(csv_path)
    assert "1 rows of train_labels.csv without a case in the cohort: 999" in lines[0]
    assert "BraTS2021_00077" in lines[1]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ID,MGMT\n1,0\n", "no column BraTS21ID or MGMT_value"),
        ("BraTS21ID,MGMT_value\n1,2\n", "line 2: MGMT_value of 1 is '2'; expected 0 or 1"),
        ("BraTS21ID,MGMT_value\n12,1\n00012,0\n", "line 3: subject 00012 is listed twice (also as 12)"),
    ],
)
def test_bad_labels_csv_names_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelsCSVError, match=str(path)) as info:
        read_mgmt_csv(path)
    assert problem in str(info.value)


# --------------------------------------------------------------------------- split, config, CLI


def test_split_is_deterministic_by_subject_and_stratified():
    ids = [f"BraTS2021_{i:05d}" for i in range(20)]
    labels = [1] * 4 + [0] * 16
    train, val = split_subjects(ids, 0.25, seed=3, strata=labels)
    assert (train, val) == split_subjects(list(reversed(ids)), 0.25, seed=3, strata=list(reversed(labels)))
    assert len(val) == 5 and not set(train) & set(val) and sorted(train + val) == ids
    assert sum(labels[ids.index(i)] for i in val) == 1  # 25 % of the 4 positives
    assert split_subjects(ids, 0.25, seed=4, strata=labels)[1] != val
    assert split_subjects(ids, 0.0, seed=3) == (ids, [])


def test_config_rejects_bad_values_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"invalid lr=-1\.0, val_fraction=1\.5"):
        FinetuneConfig(tmp_path, tmp_path, lr=-1.0, val_fraction=1.5)
    with pytest.raises(ValueError, match="patch_size must be one or three multiples of 32"):
        FinetuneConfig(tmp_path, tmp_path, patch_size=48)
    with pytest.raises(ValueError, match="BatchNorm cannot train"):
        FinetuneConfig(tmp_path, tmp_path, patch_size=32, batch_size=1)
    config = FinetuneConfig(tmp_path, tmp_path / "out", patch_size=(64, 64, 32), pretrained="w.safetensors")
    assert FinetuneConfig.from_dict(config.to_dict()) == config


def test_cli_parsers_build_the_config(tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    finetune_parser = add_finetune_parser(sub)
    compare_parser = add_compare_parser(sub)
    for p in (finetune_parser, compare_parser):
        assert all(action.help for action in p._actions), "every flag has help"
    args = parser.parse_args(["finetune", str(tmp_path), "--out", str(tmp_path / "o"), "--conv", "3d",
                              "--pretrained", "none", "--patch-size", "64", "--epochs", "3", "--no-amp", "--resume",
                              "--modality-dropout", "0.5"])
    config = config_from_args(args)
    assert config.modality_dropout == 0.5
    assert (config.conv, config.pretrained, config.patch_size, config.epochs) == ("3d", False, (64, 64, 64), 3)
    assert (config.amp, config.resume, config.augment) == (False, True, True)
    assert args.handler.__name__ == "run_finetune"
    args = parser.parse_args(["compare", str(tmp_path), "--out", "o", "--task", "classification"])
    assert config_from_args(args).task == "classification" and args.handler.__name__ == "run_compare"


# --------------------------------------------------------------------------- augmentation and sampling


def test_augmentation_moves_image_and_target_together_and_is_seeded():
    mask = torch.zeros(1, 32, 32, 32)
    mask[0, 4:14, 10:26, 6:20] = 1.0
    image = torch.cat([mask, torch.randn(3, 32, 32, 32) * 0.1])
    aug = Augmentation(affine_prob=1.0, rotate_degrees=15.0, scale=0.15)
    moved, target = augment(image, mask.clone(), torch.Generator().manual_seed(5), aug)
    assert not torch.equal(target, mask)  # it did move
    assert ((moved[0] > 0.5) == target[0].bool()).float().mean() > 0.98
    again, _ = augment(image, mask.clone(), torch.Generator().manual_seed(5), aug)
    assert torch.equal(moved, again)


def _case_with_tumour(size: int = 64) -> SegmentationCase:
    labels = np.zeros((size, size, size), dtype=np.uint8)
    labels[50:54, 50:54, 50:54] = 2
    image = np.zeros((4, size, size, size), dtype=np.float16)
    return SegmentationCase("c", image, labels, "brats2021", (1.0, 1.0, 1.0), np.argwhere(labels > 0).astype(np.int32))


def test_patches_oversample_tumour_and_are_a_function_of_epoch_and_index():
    case = _case_with_tumour()

    def tumour_share(fraction: float) -> float:
        data = SegmentationPatches([case], (16, 16, 16), 40, seed=0, foreground_fraction=fraction, augmentation=None)
        return float(np.mean([data[i][1][0].any().item() for i in range(len(data))]))

    assert tumour_share(1.0) == 1.0
    assert tumour_share(0.0) < 0.3
    data = SegmentationPatches([case], (16, 16, 16), 8, seed=0, foreground_fraction=0.5, augmentation=Augmentation())
    first = data[3]
    assert first[0].shape == (4, 16, 16, 16) and first[1].shape == (3, 16, 16, 16)
    assert torch.equal(data[3][1], first[1])
    # the same samples whatever the number of worker processes (floats from other processes:
    # a tolerance far below any change of patch or augmentation)
    loaded = [[torch.cat(parts) for parts in zip(*DataLoader(data, batch_size=2, num_workers=n))] for n in (0, 2)]
    images, targets = zip(*loaded)  # (in this process, in 2 workers)
    torch.testing.assert_close(images[1], images[0], rtol=1e-5, atol=1e-6)
    assert (targets[1] != targets[0]).float().mean() <= 1e-3  # thresholded: a rounding may flip a voxel
    data.set_epoch(1)
    assert not torch.equal(torch.stack([data[i][0] for i in range(8)]), images[0])


def test_binary_metrics():
    assert binary_metrics([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == {"accuracy": 1.0, "balanced_accuracy": 1.0, "auc": 1.0}
    swapped = binary_metrics([0.9, 0.6, 0.4, 0.1], [0, 0, 1, 1])
    assert swapped["auc"] == 0.0 and swapped["accuracy"] == 0.0
    imbalanced = binary_metrics([0.9, 0.9, 0.9, 0.1], [1, 1, 1, 0])  # all correct
    assert imbalanced["balanced_accuracy"] == 1.0
    one_class = binary_metrics([0.2, 0.7], [1, 1])
    assert math.isnan(one_class["auc"]) and one_class["balanced_accuracy"] == 0.5


def test_plot_draws_the_curves_and_a_legend_clear_of_them(tmp_path):
    # a rising curve crosses the top-right corner, a falling one the top left: the legend goes elsewhere
    rising = [0.0, 1 / 3, 2 / 3, 1.0]
    corners = []
    for ys in (rising, rising[::-1]):
        path = line_plot({"a": ([1, 2, 3, 4], ys), "b": ([1, 2, 3, 4], [0.9 * y for y in ys])}, tmp_path / "p.png",
                         title="t", xlabel="x", ylabel="y")
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert pixels.shape == (440, 720, 3)
        legend = np.argwhere((pixels == LEGEND_FRAME).all(axis=-1))
        assert legend.size, "no legend drawn"
        (y0, x0), (y1, x1) = legend.min(0), legend.max(0)
        corners.append((y0 < pixels.shape[0] / 2, x0 > pixels.shape[1] / 2))
        outside = pixels.copy()
        outside[y0 : y1 + 1, x0 : x1 + 1] = 255
        for colour in COLOURS[:2]:
            assert (np.abs(outside - colour).max(axis=-1) < 40).sum() > 300, "a curve is missing"
            inside = np.abs(pixels[y0 + 1 : y1, x0 + 1 : x1] - colour).max(axis=-1) < 40
            assert 0 < inside.sum() <= 200  # only the swatch of each curve: no curve crosses the legend
    assert corners[0] != corners[1]


# --------------------------------------------------------------------------- training runs


def test_segmentation_finetune_learns_and_writes_a_usable_checkpoint(cohort, tmp_path):
    events = []
    config = FinetuneConfig(cohort, tmp_path / "run", **SMALL, epochs=5, steps_per_epoch=4, lr=3e-3,
                            schedule="constant", val_fraction=0.34)
    result = finetune(config, on_event=events.append)
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1
    assert history[-1]["val_dice_WT"] > history[0]["val_dice_WT"] + 0.1
    assert len(result.val_ids) == 2 and not set(result.val_ids) & set(result.train_ids)
    # live events: start, one per step, one per epoch, end
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 20 and kinds.count("epoch") == 5
    assert [e["val_dice_mean"] for e in events if e["event"] == "epoch"] == [r["val_dice_mean"] for r in history]
    # on disk: history.csv, best and last checkpoints for the Segment widget
    on_disk = read_history(tmp_path / "run" / "history.csv")
    assert [row["epoch"] for row in on_disk] == [1, 2, 3, 4, 5]
    assert on_disk[-1]["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-5)
    best_epoch = max(history, key=lambda r: r["val_dice_mean"])["epoch"]
    model = load_model(result.best_checkpoint)
    meta = model.checkpoint_meta
    assert meta["task"] == "segmentation" and meta["label_convention"] == "brats2021"
    assert meta["normalisation"] == "zscore_brain" and meta["patch_size"] == [32, 32, 32]
    assert meta["training"]["epochs_completed"] == best_epoch
    assert meta["metrics"]["val_dice_mean"] == pytest.approx(max(r["val_dice_mean"] for r in history))
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def test_classification_finetune_reports_unmatched_and_computes_metrics(cohort, tmp_path):
    csv_path = tmp_path / "labels.csv"  # ids without zero padding; case 5 has no row; 777 has no case
    csv_path.write_text("BraTS21ID,MGMT_value\n0,1\n1,0\n2,1\n3,0\n4,1\n777,1\n")
    events = []
    config = FinetuneConfig(cohort, tmp_path / "run", task="classification", labels_csv=csv_path, **SMALL,
                            epochs=2, val_fraction=0.4)
    result = finetune(config, on_event=events.append)
    assert any("777" in w for w in result.warnings) and any("BraTS2021_00005" in w for w in result.warnings)
    assert [e["message"] for e in events if e["event"] == "warning"] == result.warnings
    assert sorted(result.train_ids + result.val_ids) == [f"BraTS2021_{i:05d}" for i in range(5)]
    assert len(result.val_ids) == 2  # one of each class (stratified)
    row = result.history[-1]
    assert row["steps"] == 2  # one pass over 3 training subjects, batch 2
    for key in ("val_loss", "val_accuracy", "val_balanced_accuracy", "val_auc"):
        assert 0.0 <= row[key] < math.inf
    assert row["val_accuracy"] in (0.0, 0.5, 1.0)
    model = load_model(result.last_checkpoint)
    assert model.checkpoint_meta["positive_class"].startswith("MGMT promoter methylated")
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 32, 32, 32)).shape == (1, 1)


def test_modality_dropout_zeroes_a_proper_subset_of_sequences() -> None:
    image = torch.randn(4, 8, 8, 8) + 5.0  # no channel is 0 anywhere
    gen = torch.Generator().manual_seed(0)
    aug = Augmentation.dropout_only(1.0)
    seen = set()
    for _ in range(200):
        out, _ = augment(image, None, gen, aug)
        kept = tuple(bool(out[c].any()) for c in range(4))
        assert 1 <= sum(kept) <= 3  # never all, never none
        for c in range(4):
            assert torch.equal(out[c], image[c]) or not out[c].any()  # kept as is, or dropped whole
        seen.add(kept)
    assert len(seen) == 14  # every non-empty proper subset is drawn
    out, _ = augment(image, None, gen, Augmentation.dropout_only(0.0))
    assert torch.equal(out, image)
    with pytest.raises(ValueError, match="modality_dropout=1.5"):
        FinetuneConfig(Path("c"), Path("o"), modality_dropout=1.5)


def test_region_loss_is_monais_batch_dice_plus_bce() -> None:
    from monai.losses import DiceLoss

    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 3, 6, 5, 4, generator=gen)
    target = (torch.rand(2, 3, 6, 5, 4, generator=gen) > 0.7).float()
    target[:, 2] = 0  # an empty region: the smoothing terms decide
    expected = DiceLoss(sigmoid=True, batch=True)(logits, target)
    assert float(soft_dice_loss(logits, target)) == pytest.approx(float(expected), rel=1e-6)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert float(RegionLoss()(logits, target)) == pytest.approx(float(expected + bce), rel=1e-6)


def test_auc_is_monais_with_ties() -> None:
    from monai.metrics import compute_roc_auc

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    probabilities = np.round(0.3 * labels + 0.7 * rng.random(40), 1)  # rounded: many ties
    expected = float(compute_roc_auc(torch.from_numpy(probabilities), torch.from_numpy(labels)))
    assert binary_metrics(probabilities, labels)["auc"] == pytest.approx(expected, abs=1e-12)


def test_auc_interval_is_a_bootstrap_over_subjects() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    probabilities = np.clip(0.25 * labels + 0.75 * rng.random(60), 0, 1)  # a weak signal
    auc = binary_metrics(probabilities, labels)["auc"]
    low, high = auc_interval(probabilities, labels)
    assert 0.5 < low < auc < high < 1.0 and auc_interval(probabilities, labels) == (low, high)  # fixed seed
    wide = auc_interval(probabilities[:12], labels[:12])
    assert wide[1] - wide[0] > high - low  # fewer subjects, a wider interval
    assert all(math.isnan(v) for v in auc_interval([0.2, 0.4, 0.9], [0, 0, 1]))  # one positive: no interval


def test_compare_classification_reports_accuracy_balanced_accuracy_auc_and_its_interval(cohort, tmp_path):
    config = FinetuneConfig(cohort, tmp_path / "cls", task="classification", **SMALL, epochs=1, val_fraction=0.5)
    result = compare(config, arms=["acs_imagenet", "3d_scratch"])
    with open(result.table_csv, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["variant"] for row in rows] == ["acs_imagenet", "3d_scratch"]
    for row in rows:
        assert row["best_metric"] == "val_auc"
        for key in ("val_accuracy", "val_balanced_accuracy", "val_auc"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert "val_auc_low" in row and "val_auc_high" in row
    text = result.table_md.read_text()
    assert "95 % bootstrap interval over subjects" in text and "0.6 ROC AUC (RSNA-MICCAI" in text


def test_classification_without_labels_csv_names_the_missing_file(cohort, tmp_path):
    missing = tmp_path / "no_such.csv"
    config = FinetuneConfig(cohort, tmp_path / "run", task="classification", labels_csv=missing, **SMALL)
    with pytest.raises(LabelsCSVError, match=f"{missing}: labels CSV not found"):
        finetune(config)


def test_cancel_saves_the_model_and_resume_reproduces_an_uninterrupted_run(cohort, tmp_path):
    common = dict(**SMALL, epochs=3, steps_per_epoch=2, val_fraction=0.2)
    straight = finetune(FinetuneConfig(cohort, tmp_path / "straight", **common))

    stop = CancelEvent()
    seen = []

    def on_event(event):
        seen.append(event)
        if event["event"] == "epoch" and event["epoch"] == 2:
            stop.set("stopped by the user")

    config = FinetuneConfig(cohort, tmp_path / "run", **common)
    first = finetune(config, cancel=stop, on_event=on_event)
    assert first.cancelled and first.epochs_completed == 2
    stopped_at = next(i for i, e in enumerate(seen) if e["event"] == "epoch" and e["epoch"] == 2)
    assert [e["event"] for e in seen[stopped_at + 1:]] == ["end"]  # not one more step once stop was set
    cancelled = load_model(first.last_checkpoint)  # a usable model, saved when cancelled
    assert cancelled.checkpoint_meta["training"]["cancelled_during_epoch"] == 3
    stopped = json.loads((tmp_path / "run" / "stopped.json").read_text())  # the run folder says so
    assert stopped == {"stopped": True, "reason": "stopped by the user", "epoch": 3, "steps_done_in_epoch": 0,
                       "epochs_completed": 2, "checkpoint": "last.safetensors"}
    _, header = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert header["meta"]["training"]["epochs_completed"] in (1, 2)

    with pytest.raises(FileExistsError, match="resume=True"):
        finetune(config)
    changed = FinetuneConfig(cohort, tmp_path / "run", **{**common, "lr": 0.1}, resume=True)
    with pytest.raises(ValueError, match="lr: 0.001 -> 0.1"):
        finetune(changed)

    events = []
    resumed = finetune(FinetuneConfig(cohort, tmp_path / "run", **common, resume=True), on_event=events.append)
    assert events[0]["start_epoch"] == 3
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [3]
    assert not resumed.cancelled and resumed.epochs_completed == 3
    assert not (tmp_path / "run" / "stopped.json").exists()  # the resumed run finished: no stale notice
    for mine, reference in zip(resumed.history, straight.history):
        for key in ("epoch", "train_loss", "lr", "val_dice_WT", "val_dice_TC", "val_dice_ET"):
            assert mine[key] == pytest.approx(reference[key], rel=1e-6, abs=1e-7), key
    final, reference = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.allclose(final[k].float(), reference[k].float(), atol=1e-6) for k in reference)


def test_compare_command_writes_table_and_learning_curves(cohort, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers())
    out = tmp_path / "cmp"
    argv = ["compare", str(cohort), "--out", str(out), "--patch-size", "32", "--batch-size", "2", "--epochs", "2",
            "--steps-per-epoch", "2", "--val-fraction", "0.2", "--no-progress"]
    args = parser.parse_args(argv)
    assert args.arms == list(ARMS)  # all four arms by default
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    for arm in ("| acs_imagenet | 0 | acs | ImageNet |", "| acs_scratch | 0 | acs | scratch |",
                "| 3d_scratch | 0 | 3d | scratch |", "| 3d_inflated | 0 | 3d | ImageNet, inflated |"):
        assert arm in printed
    with open(out / "compare.csv", newline="") as stream:
        rows = {row["variant"]: row for row in csv.DictReader(stream)}
    assert list(rows) == list(ARMS)
    acs, native = rows["acs_imagenet"], rows["3d_scratch"]
    assert float(acs["parameters_M"]) < float(native["parameters_M"])
    assert rows["acs_scratch"]["parameters_M"] == acs["parameters_M"]
    assert rows["3d_inflated"]["parameters_M"] == native["parameters_M"]
    assert 0 < float(acs["gflops_per_patch"]) < float(native["gflops_per_patch"])
    assert float(acs["seconds_per_step"]) > 0 and native["epochs"] == "2"
    assert acs["best_metric"] == "val_dice_mean" and 0 <= float(acs["best_value"]) <= 1
    assert (out / "compare.md").read_text() in printed
    for name in ("curves_train_loss.png", "curves_val_dice_mean.png"):
        pixels = np.asarray(Image.open(out / name).convert("RGB"))
        for colour in COLOURS[:4]:  # every arm's curve is drawn
            assert (pixels == colour).all(axis=-1).sum() > 20
    assert load_model(out / "3d_scratch" / "best.safetensors").create_kwargs["conv"] == "3d"
    assert load_model(out / "3d_inflated" / "best.safetensors").create_kwargs["conv"] == "3d"
    with pytest.raises(FileExistsError, match="compare.md exists"):
        compare(config_from_args(args))


def test_compare_over_seeds_keeps_one_split_and_reports_mean_and_sd(cohort, tmp_path):
    config = FinetuneConfig(cohort=cohort, out_dir=tmp_path / "seeds", patch_size=(32, 32, 32), batch_size=2,
                            epochs=2, steps_per_epoch=1, val_fraction=0.2, seed=5)
    result = compare(config, arms=["acs_scratch"], seeds=[0, 1])
    assert [(row["variant"], row["seed"]) for row in result.rows] == [("acs_scratch", 0), ("acs_scratch", 1)]
    folders = [tmp_path / "seeds" / "acs_scratch" / f"seed{k}" for k in (0, 1)]
    splits = [[json.loads((f / "config.json").read_text())[k] for k in ("train_ids", "val_ids")] for f in folders]
    assert splits[0] == splits[1]  # the seeds vary the initialisation, not the validation cases
    first, second = (result.runs["acs_scratch", k].model.state_dict() for k in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    summary = summary_rows(result.rows)
    assert len(summary) == 1 and summary[0]["n_seeds"] == 2 and "+-" in summary[0]["best_value"]
    assert "Per arm, mean +- standard deviation over the seeds" in result.table_md.read_text()
    pixels = np.asarray(Image.open(tmp_path / "seeds" / "curves_train_loss.png").convert("RGB")).astype(int)
    band = np.round(255 - 0.2 * (255 - np.array(COLOURS[0])))  # the line colour at 20 % over white
    assert (np.abs(pixels - band).max(axis=-1) <= 2).sum() > 20  # the band over the seeds is drawn
    with pytest.raises(ValueError, match="unknown arm"):
        compare(config, arms=["acs_magic"])


@pytest.mark.gpu
def test_cuda_mixed_precision_run_saves_its_gradient_scaler(cohort, tmp_path):
    common = dict(**SMALL, epochs=2, steps_per_epoch=2, val_fraction=0.2, device="cuda", amp=True, pretrained=False)
    first = finetune(FinetuneConfig(cohort, tmp_path / "run", **common))
    assert all(math.isfinite(row["train_loss"]) and row["peak_memory_mib"] > 0 for row in first.history)
    state = torch.load(tmp_path / "run" / "training_state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the float16 gradient scaler is saved for resuming
    assert next(first.model.parameters()).is_cuda
    assert load_model(first.best_checkpoint).checkpoint_meta["training"]["config"]["amp"] is True


def test_resume_without_a_saved_state_never_replaces_checkpoints(cohort, tmp_path):
    """A folder with best/last checkpoints but no training_state.pt: --resume is refused, nothing replaced."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.safetensors", "last.safetensors"):
        (run / name).write_bytes(b"an earlier model")
    with pytest.raises(FileExistsError, match="no training_state.pt to resume it from; nothing was replaced"):
        finetune(FinetuneConfig(cohort, run, **SMALL, epochs=1, steps_per_epoch=1, resume=True))
    assert all((run / name).read_bytes() == b"an earlier model" for name in ("best.safetensors", "last.safetensors"))
