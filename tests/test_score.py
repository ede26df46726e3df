"""The metric and the submission checks that run before anything is written or uploaded."""

import math

import numpy as np
import pandas as pd
import pytest

from kit import score
from kit.errors import KitError


def test_log_loss_known_values():
    assert score.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert score.log_loss([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3)
    # Kaggle clips at 1e-15, so a confident miss costs 34.5, not infinity.
    assert score.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_clipping_bounds_the_worst_case():
    clipped = score.clip([0.0, 0.3, 1.0], 0.005, 0.995)
    assert clipped.tolist() == [0.005, 0.3, 0.995]
    assert score.log_loss([1], clipped[:1]) == pytest.approx(-math.log(0.005))


def test_accuracy_thresholds_at_one_half():
    assert score.accuracy([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.6]) == 0.5


SAMPLE_IDS = [1, 2, 3]


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"id": [1, 2], "label": [0.1, 0.2]}), "1 missing"),
    (pd.DataFrame({"id": [1, 2, 3, 4], "label": [0.1] * 4}), "1 not in sample_submission"),
    (pd.DataFrame({"id": [1, 2, 2, 3], "label": [0.1] * 4}), "id 2 appears more than once"),
    (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, np.nan, 0.2]}), "NaN, infinite"),
    (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, np.inf, 0.2]}), "NaN, infinite"),
    (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, 1.2, 0.2]}), r"must lie in \[0, 1\]"),
    (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, -0.1, 0.2]}), r"must lie in \[0, 1\]"),
    (pd.DataFrame({"id": [1, 2, 3], "prob": [0.1, 0.1, 0.2]}), "header must be 'id,label'"),
    (pd.DataFrame({"id": ["a", "2", "3"], "label": [0.1, 0.1, 0.2]}), "non-numeric id"),
])
def test_invalid_submissions_are_refused(frame, message):
    with pytest.raises(KitError, match=message):
        score.validate_submission(frame, SAMPLE_IDS)


def test_valid_submission_comes_back_sorted():
    out = score.validate_submission(pd.DataFrame({"id": [3, 1, 2], "label": [0.3, 0.1, 0.2]}), SAMPLE_IDS)
    assert out["id"].tolist() == [1, 2, 3] and out["label"].tolist() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("id;label\n1;0.5\n", "header must be 'id,label'"),
    ('id,label\n1,"0.5\n', "not a readable CSV"),
])
def test_bad_csv_files(tmp_path, content, message):
    path = tmp_path / "sub.csv"
    path.write_text(content)
    with pytest.raises(KitError, match=message):
        score.read_csv(path, "submission")


def test_score_file(tmp_path):
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n2,0\n3,1\n")
    (tmp_path / "sub.csv").write_text("id,label\n3,0.8\n1,0.9\n2,0.3\n")
    result = score.score_file(tmp_path / "sub.csv", tmp_path / "labels.csv")
    assert result["n"] == 3
    assert result["accuracy"] == 1.0
    assert result["log_loss"] == pytest.approx(score.log_loss([1, 0, 1], [0.9, 0.3, 0.8]))


def test_a_labels_file_with_more_columns_is_scored_on_id_and_label(tmp_path):
    (tmp_path / "labels.csv").write_text("id,label,breed,split\n1,1,pug,a\n2,0,siamese,b\n3,1,corgi,a\n")
    (tmp_path / "plain.csv").write_text("id,label\n1,1\n2,0\n3,1\n")
    (tmp_path / "sub.csv").write_text("id,label\n1,0.9\n2,0.2\n3,0.6\n")
    wide = score.score_file(tmp_path / "sub.csv", tmp_path / "labels.csv")
    assert wide == score.score_file(tmp_path / "sub.csv", tmp_path / "plain.csv")
    assert wide["n"] == 3 and wide["accuracy"] == 1.0


@pytest.mark.bad_input
@pytest.mark.parametrize("text, message", [
    ("id,breed\n1,pug\n", "columns 'id' and 'label'"),
    ("id,label\n1,dog\n", "labels must be 0 or 1"),
    ("id,label\nx,1\n", "every id must be a number"),
])
def test_a_labels_file_missing_or_malformed_is_one_line(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    (tmp_path / "sub.csv").write_text("id,label\n1,0.9\n")
    with pytest.raises(KitError, match=message):
        score.score_file(tmp_path / "sub.csv", tmp_path / "labels.csv")


def test_labels_for_some_of_the_rows_score_those_rows(tmp_path):
    (tmp_path / "sub.csv").write_text("id,label\n1,0.9\n2,0.2\n3,0.6\n4,0.5\n")
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n2,0\n")
    result = score.score_file(tmp_path / "sub.csv", tmp_path / "labels.csv")
    assert result["n"] == 2 and result["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)


@pytest.mark.bad_input
def test_labels_for_ids_the_submission_lacks_are_one_line(tmp_path):
    (tmp_path / "sub.csv").write_text("id,label\n1,0.9\n2,0.2\n")
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n7,0\n8,1\n")
    with pytest.raises(KitError, match=r"2 ids have no row in .*sub.csv \(first 7\)"):
        score.score_file(tmp_path / "sub.csv", tmp_path / "labels.csv")
