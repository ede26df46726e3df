"""The metric registry: each metric against a value worked out by hand (or scikit-learn's), its direction,
how per-class probabilities become what it takes, and the kappa threshold fit."""

import math

import numpy as np
import pytest

from kit.errors import KitError
from kit import score
from kit.task import metrics


def test_binary_log_loss_matches_kaggle_and_the_redux_scorer():
    m = metrics.get("log_loss")
    assert m.score([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert m.score([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3)
    # Kaggle clips at 1e-15: a confident miss costs 34.5, not infinity.
    assert m.score([1], [0.0]) == pytest.approx(-math.log(1e-15))
    rng = np.random.default_rng(0)
    labels, probs = rng.integers(0, 2, 50), rng.uniform(0, 1, 50)
    assert m.score(labels, probs) == pytest.approx(score.log_loss(labels, probs), rel=1e-12)


def test_multi_class_log_loss_by_hand_and_against_sklearn():
    from sklearn.metrics import log_loss

    m = metrics.get("multi_log_loss")
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    labels = [0, 2, 0]
    assert m.score(labels, probs) == pytest.approx(-(math.log(0.7) + math.log(0.8) + math.log(0.3)) / 3)
    assert m.score(labels, probs) == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2]))
    # Kaggle clips, then renormalises each row: [0.4, 0.2, 0.2] is [0.5, 0.25, 0.25].
    assert m.score([0], [[0.4, 0.2, 0.2]]) == pytest.approx(math.log(2))


def test_roc_auc_by_hand():
    m = metrics.get("roc_auc")
    # Of the four (positive, negative) pairs, 0.35 < 0.4 is the one ranked wrong.
    assert m.score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


@pytest.mark.bad_input
def test_roc_auc_of_one_class_is_one_line():
    with pytest.raises(KitError, match="roc_auc needs labels of both classes") as caught:
        metrics.get("roc_auc").score([1, 1, 1], [0.2, 0.5, 0.9])
    assert "\n" not in str(caught.value)


def test_accuracy_and_f1_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0]
    assert metrics.get("accuracy").score(labels, predicted) == pytest.approx(4 / 6)
    # Single-label multi-class: micro F1 is the accuracy.
    assert metrics.get("f1_micro").score(labels, predicted) == pytest.approx(4 / 6)
    # Per class: precision, recall -> F1. 0: 1/2, 1/2 -> 1/2; 1: 2/3, 1 -> 4/5; 2: 1, 1/2 -> 2/3.
    assert metrics.get("f1_macro").score(labels, predicted) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def _quadratic_kappa_by_hand(labels, predicted, k):
    """1 - sum(w * observed) / sum(w * expected), w = (i - j)^2 / (k - 1)^2, expected from the marginals."""
    observed = np.zeros((k, k))
    for a, b in zip(labels, predicted):
        observed[a, b] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(labels)
    w = np.subtract.outer(np.arange(k), np.arange(k)) ** 2 / (k - 1) ** 2
    return 1 - (w * observed).sum() / (w * expected).sum()


def test_quadratic_kappa_by_hand():
    labels, predicted = [0, 1, 2, 2, 3, 4, 4, 1], [0, 2, 2, 1, 3, 4, 3, 1]
    expected = _quadratic_kappa_by_hand(labels, predicted, 5)
    assert metrics.get("quadratic_kappa").score(labels, predicted) == pytest.approx(expected)
    assert 0.8 < expected < 1   # mostly right, never more than one grade off


@pytest.mark.parametrize("name, higher", [("log_loss", False), ("multi_log_loss", False), ("roc_auc", True),
                                          ("accuracy", True), ("f1_micro", True), ("f1_macro", True),
                                          ("quadratic_kappa", True)])
def test_direction(name, higher):
    m = metrics.get(name)
    assert m.higher_is_better is higher
    assert m.better(0.9, 0.1) is higher and m.better(0.1, 0.9) is not higher
    assert m.clips is (name in ("log_loss", "multi_log_loss"))   # only log losses clip


@pytest.mark.bad_input
def test_unknown_metric_lists_the_choices():
    with pytest.raises(KitError) as caught:
        metrics.get("logloss")
    assert str(caught.value) == ("unknown metric 'logloss'; choose one of: log_loss, multi_log_loss, roc_auc, "
                                 "accuracy, f1_micro, f1_macro, quadratic_kappa")


PROBS = np.array([[0.0, 1.0], [0.7, 0.3], [0.999, 0.001]])


def test_binary_metrics_take_the_second_class_and_only_log_loss_clips():
    assert metrics.get("log_loss").values(PROBS, clip=(0.01, 0.99)).tolist() == [0.99, 0.3, 0.01]
    assert metrics.get("roc_auc").values(PROBS, clip=(0.01, 0.99)).tolist() == [1.0, 0.3, 0.001]
    # A 1-d array is P(second class) already.
    assert metrics.get("log_loss").values(np.array([0.2, 0.9])).tolist() == [0.2, 0.9]


def test_multi_class_clip_renormalises_rows():
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    out = metrics.get("multi_log_loss").values(probs, clip=(0.01, 0.99))
    assert out.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert out[0].tolist() == pytest.approx([0.99 / 1.01, 0.01 / 1.01, 0.01 / 1.01])
    assert out[1].tolist() == pytest.approx([0.2, 0.3, 0.5])   # inside the bounds: unchanged


def test_class_metrics_take_the_argmax():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.0, 0.1, 0.9]])
    assert metrics.get("accuracy").values(probs, clip=(0.2, 0.8)).tolist() == [1, 0, 2]


def test_grades_round_the_expected_grade_unless_thresholds_say_otherwise():
    probs = np.array([[1, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0, 0.2, 0.6, 0.2, 0], [0, 0, 0, 0.3, 0.7]], float)
    kappa = metrics.get("quadratic_kappa")
    # expected grades 0, 0.5, 2, 3.7 -> rounding (0.5 rounds up)
    assert kappa.values(probs).tolist() == [0, 1, 2, 4]
    assert kappa.values(probs, thresholds=(0.6, 1.5, 2.5, 3.8)).tolist() == [0, 0, 2, 3]
    with pytest.raises(KitError, match="4 non-decreasing numbers"):
        kappa.values(probs, thresholds=(0.5, 1.5))


def _shrunk_predictions(rng, n, k=5):
    """OOF-like probabilities of a model that pulls every grade toward the middle, as regression-ish
    models trained with a log loss do: the expected grade of grade g sits near 2 + 0.5 (g - 2)."""
    grades = rng.integers(0, k, n)
    centre = 2 + 0.5 * (grades - 2) + rng.normal(0, 0.35, n)
    logits = -((np.arange(k)[None, :] - centre[:, None]) ** 2)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return grades, probs


def test_kappa_threshold_fit_improves_kappa_and_is_deterministic():
    rng = np.random.default_rng(7)
    labels, probs = _shrunk_predictions(rng, 1500)
    held_labels, held_probs = _shrunk_predictions(rng, 1500)
    kappa = metrics.get("quadratic_kappa")

    thresholds = metrics.fit_grade_thresholds(labels, probs)
    assert thresholds == metrics.fit_grade_thresholds(labels, probs)
    assert list(thresholds) == sorted(thresholds) and len(thresholds) == 4
    rounded, fitted = kappa.evaluate(labels, probs), kappa.evaluate(labels, probs, thresholds=thresholds)
    assert fitted > rounded + 0.01, (rounded, fitted)
    # Fitted on one set, the thresholds also help on predictions they never saw.
    assert kappa.evaluate(held_labels, held_probs, thresholds=thresholds) > kappa.evaluate(held_labels, held_probs)


def test_kappa_threshold_fit_keeps_rounding_when_rounding_is_best():
    probs = np.eye(3)[[0, 1, 2, 2, 1, 0]]
    assert metrics.fit_grade_thresholds([0, 1, 2, 2, 1, 0], probs) == (0.5, 1.5)


@pytest.mark.parametrize("kaggle_name, value_columns, name", [
    ("Log Loss", 1, "log_loss"), ("Multi Class Log Loss", 120, "multi_log_loss"), ("LogLoss", 10, "multi_log_loss"),
    ("Area Under Receiver Operating Characteristic Curve", 1, "roc_auc"), ("AUC", 1, "roc_auc"),
    ("Quadratic Weighted Kappa", 1, "quadratic_kappa"), ("Categorization Accuracy", 1, "accuracy"),
    ("MeanFScore", 1, "f1_micro"), ("Macro F1", 1, "f1_macro"), ("Mean Average Precision @ 5", 1, None),
])
def test_kaggle_names_of_metrics_map_to_the_registry(kaggle_name, value_columns, name):
    assert metrics.from_kaggle(kaggle_name, value_columns) == name
