"""A cohort under review: state in the cohort folder, segment / accept / train-on-corrections, nothing lost."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
import torch

from napari_acs.inference import Segmenter
from napari_acs.io import BratsInputError, find_cases, load_case
from napari_acs.models import create_model
from napari_acs.progress import CancelEvent
from napari_acs.review import Manifest, ManifestError, ReviewCohort
from napari_acs.synthetic import make_cohort

SMALL = (48, 48, 40)


@pytest.fixture(scope="module")
def engine() -> Segmenter:
    torch.manual_seed(0)
    return Segmenter(create_model("tf_efficientnet_lite0", conv="acs", pretrained=False), device="cpu")


@pytest.fixture()
def cohort(tmp_path):
    make_cohort(tmp_path / "cohort", 3, shape=SMALL, workers=1, seed=5)
    return tmp_path / "cohort"


def test_a_cohort_opens_without_reading_volumes_and_everything_is_new(cohort) -> None:
    review = ReviewCohort(cohort)
    assert review.case_ids == ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"]
    entries = review.entries()
    assert [e.status for e in entries] == ["new"] * 3 and all(e.has_reference for e in entries)
    assert review.review_order() == review.case_ids  # nothing scored yet: folder order
    assert not (cohort / ".napari-acs").exists()  # opening writes nothing


def test_segmenting_saves_the_prediction_and_its_uncertainty_and_persists(cohort, engine) -> None:
    review = ReviewCohort(cohort)
    entry = review.segment("BraTS2021_00001", engine, model="random lite0")
    assert entry.status == "segmented" and set(entry.volumes_ml) == {"WT", "TC", "ET"}
    assert 0.0 <= entry.score <= 1.0 and set(entry.dice) == {"WT", "TC", "ET"}
    case = review.load("BraTS2021_00001")
    np.testing.assert_array_equal(review.prediction("BraTS2021_00001", case), engine.segment(case))
    u = review.uncertainty("BraTS2021_00001", case)
    assert u.shape == case.shape and 0.0 <= u.min() and u.max() <= 1.0
    again = ReviewCohort(cohort)  # a new viewer on the same folder: exactly where we stopped
    assert again.entry("BraTS2021_00001").record == entry.record
    assert again.entry("BraTS2021_00001").record["model"] == "random lite0"
    assert again.review_order()[0] == "BraTS2021_00001"
    assert find_cases(cohort) == [cohort / i for i in review.case_ids]  # our files break no case
    for folder in find_cases(cohort):
        load_case(folder)


def test_segment_all_stops_on_cancel_and_skips_what_is_done(cohort, engine) -> None:
    review = ReviewCohort(cohort)
    cancel = CancelEvent()
    seen = []

    def after(entry) -> None:
        seen.append(entry.case_id)
        cancel.set()

    with pytest.raises(Exception, match="cancel"):
        review.segment_all(engine, cancel=cancel, on_case=after)
    assert seen == ["BraTS2021_00000"]
    assert [e.status for e in review.entries()] == ["segmented", "new", "new"]
    done = review.segment_all(engine)  # resumes with the cases not done
    assert [e.case_id for e in done] == ["BraTS2021_00001", "BraTS2021_00002"]


def test_accepting_a_correction_keeps_the_reference_and_records_provenance(cohort, engine) -> None:
    review = ReviewCohort(cohort)
    case_id = "BraTS2021_00000"
    reference_file = cohort / case_id / f"{case_id}_seg.nii.gz"
    before = reference_file.read_bytes()
    review.segment(case_id, engine)
    case = review.load(case_id)
    corrected = review.prediction(case_id, case).copy()
    corrected[10:20, 10:20, 10:20] = 2  # painted oedema
    changed = int(np.count_nonzero(corrected != review.prediction(case_id, case)))
    entry = review.accept(case_id, corrected, model="random lite0")
    assert entry.status == "corrected" and entry.record["corrected_voxels"] == changed > 0
    np.testing.assert_array_equal(review.accepted(case_id, case), corrected)
    assert reference_file.read_bytes() == before  # the case's own reference is never replaced
    unchanged = review.accept("BraTS2021_00002", np.zeros(case.shape, np.uint8))
    assert unchanged.status == "corrected"  # never segmented: the labels are the reader's own
    review.segment("BraTS2021_00002", engine)
    same = review.accept("BraTS2021_00002", review.prediction("BraTS2021_00002"))
    assert same.status == "reviewed" and same.record["corrected_voxels"] == 0
    review.segment(case_id, engine)  # re-segmenting keeps the accepted labels and the status
    assert review.entry(case_id).status == "corrected"
    np.testing.assert_array_equal(review.accepted(case_id, case), corrected)


def test_bad_corrections_are_refused_naming_the_case_and_nothing_is_written(cohort) -> None:
    review = ReviewCohort(cohort)
    case = review.load("BraTS2021_00001")
    with pytest.raises(BratsInputError, match="BraTS2021_00001.*shape"):
        review.accept("BraTS2021_00001", np.zeros((5, 5, 5), np.uint8), case=case)
    bad = np.zeros(case.shape, np.uint8)
    bad[0, 0, 0] = 3  # not a BraTS 2021 label (1, 2, 4)
    with pytest.raises(BratsInputError, match="BraTS2021_00001.*values \\[3\\]"):
        review.accept("BraTS2021_00001", bad, case=case)
    assert not (cohort / ".napari-acs").exists()


def test_the_training_folder_holds_the_accepted_cases(cohort, engine) -> None:
    review = ReviewCohort(cohort)
    with pytest.raises(ValueError, match="no accepted"):
        review.training_folder()
    case = review.load("BraTS2021_00002")
    labels = np.zeros(case.shape, np.uint8)
    labels[20:30, 20:30, 15:25] = 4
    review.accept("BraTS2021_00002", labels)
    folder = review.training_folder()
    assert [p.name for p in find_cases(folder)] == ["BraTS2021_00002"]
    np.testing.assert_array_equal(load_case(folder / "BraTS2021_00002").label, labels)
    with_references = review.training_folder(include_references=True)
    assert [p.name for p in find_cases(with_references)] == review.case_ids
    assert [p.name for p in find_cases(review.training_folder())] == ["BraTS2021_00002"]  # links removed again


def _write_many(folder: str, offset: int) -> None:
    manifest = Manifest(folder)
    for i in range(15):
        manifest.update(f"case{offset + i}", lambda record, i=i: record.update(status="segmented", n=i))


def test_two_processes_writing_one_manifest_lose_nothing(tmp_path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(tmp_path), offset)) for offset in (0, 100)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(Manifest(tmp_path).read()) == 30


def test_a_damaged_manifest_is_named(cohort) -> None:
    (cohort / ".napari-acs").mkdir()
    (cohort / ".napari-acs" / "review.json").write_text("{not json")
    with pytest.raises(ManifestError, match="review.json"):
        ReviewCohort(cohort).entries()
    assert os.path.getsize(cohort / ".napari-acs" / "review.json") == 9  # left as it was
