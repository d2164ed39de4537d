import math

import numpy as np
import pytest

from sirenrope import metrics


def brute_force_auc(y, p):
    pos = p[y == 1]
    neg = p[y == 0]
    wins = 0.0
    for a in pos:
        wins += np.sum(a > neg) + 0.5 * np.sum(a == neg)
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------- AUC

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    # few distinct values -> many ties, within and across classes
    p = np.round(rng.random(n) * 0.5 + 0.3 * y, 1)
    assert len(np.unique(p)) < 15
    assert metrics.auc(y, p) == pytest.approx(brute_force_auc(y, p), abs=1e-12)


def test_auc_perfect_inverted_and_constant():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    assert metrics.auc(y, p) == 1.0
    assert metrics.auc(y, 1.0 - p) == 0.0
    assert metrics.auc(y, np.full(6, 0.4)) == 0.5


def test_auc_hand_case_and_scores_outside_unit_interval():
    # pos scores {2, 1}, neg scores {1, 0}: pairs (2>1),(2>0),(1=1 -> .5),(1>0) = 3.5/4
    y = [1, 1, 0, 0]
    p = [2.0, 1.0, 1.0, 0.0]
    assert metrics.auc(y, p) == pytest.approx(0.875)
    assert metrics.auc(y, [-5.0, -6.0, -6.0, -7.0]) == pytest.approx(0.875)


def test_auc_one_class_is_nan():
    assert math.isnan(metrics.auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(metrics.auc([0, 0], [0.1, 0.5]))


# ---------------------------------------------------------------- NE

def test_ne_is_one_when_predicting_base_rate():
    rng = np.random.default_rng(5)
    y = (rng.random(1000) < 0.2).astype(int)
    p = np.full(y.shape, y.mean())
    assert metrics.normalized_entropy(y, p) == pytest.approx(1.0, abs=1e-12)


def test_ne_below_one_for_informative_predictor():
    rng = np.random.default_rng(6)
    p_true = rng.uniform(0.01, 0.6, size=20000)
    y = (rng.random(p_true.size) < p_true).astype(int)
    ne = metrics.normalized_entropy(y, p_true)
    assert ne < 0.95
    # an anti-informative predictor is worse than the base rate
    assert metrics.normalized_entropy(y, 0.61 - p_true) > 1.0


def test_ne_hand_computed():
    # y = [1, 0, 0, 0], p = [0.5, 0.25, 0.25, 0.25], base rate 0.25
    # log loss = (ln 2 + 3 ln(4/3)) / 4 = 0.389048; H(0.25) = 0.562335; NE = 0.691844
    y = [1, 0, 0, 0]
    p = [0.5, 0.25, 0.25, 0.25]
    log_loss = -(math.log(0.5) + 3 * math.log(0.75)) / 4
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert metrics.normalized_entropy(y, p) == pytest.approx(log_loss / h, rel=1e-12)
    assert metrics.normalized_entropy(y, p) == pytest.approx(0.6918442733, rel=1e-9)


def test_ne_clips_extreme_predictions():
    y = [1, 0]
    ne = metrics.normalized_entropy(y, [0.0, 1.0], eps=1e-7)
    expected = -math.log(1e-7) / math.log(2.0)
    assert ne == pytest.approx(expected, rel=1e-6)
    assert math.isfinite(ne)


def test_ne_nan_for_degenerate_base_rate():
    assert math.isnan(metrics.normalized_entropy([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(metrics.normalized_entropy([1, 1], [0.9, 0.8]))


# ---------------------------------------------------------------- ECE

def test_ece_zero_for_perfectly_calibrated_bins():
    # bin [0.2, 0.2667): p = 0.25 with 1 of 4 positive; bin [0.7333, 0.8): p = 0.75, 3 of 4
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-15)


def test_ece_hand_computed():
    # 15 bins of width 1/15 = 0.0667
    # bin 1 ([0.0667, 0.1333)): p = 0.1, 0.1; y = 0, 1 -> |0.1 - 0.5| = 0.4, weight 2/5
    # bin 13 ([0.8667, 0.9333)): p = 0.9, 0.9, 0.9; y = 1, 1, 1 -> |0.9 - 1| = 0.1, weight 3/5
    y = [0, 1, 1, 1, 1]
    p = [0.1, 0.1, 0.9, 0.9, 0.9]
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.4 * 2 / 5 + 0.1 * 3 / 5)


def test_ece_mixed_values_within_a_bin():
    # p = 0.01 and 0.05 share bin 0: mean p = 0.03, mean y = 0.5 -> 0.47
    assert metrics.expected_calibration_error([0, 1], [0.01, 0.05]) == pytest.approx(0.47)
    # with 2 bins they are also together; with 100 bins they are apart: (|0.01-0|+|0.05-1|)/2
    assert metrics.expected_calibration_error([0, 1], [0.01, 0.05], n_bins=100) == pytest.approx(0.48)


def test_ece_p_equal_one_goes_in_last_bin():
    # p = 1.0 and p = 0.95 share the last bin [14/15, 1]: mean p = 0.975, mean y = 1
    y = [1, 1]
    p = [1.0, 0.95]
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.025)
    # bin edges: 1.0 with 0.5 (2 bins) -> last bin shared with 0.5
    assert metrics.expected_calibration_error([1, 0], [1.0, 0.5], n_bins=2) == pytest.approx(0.25)
    assert metrics.expected_calibration_error([1], [1.0]) == 0.0


def test_ece_bins_are_left_closed():
    # p = 0.5 on the edge of 2 bins belongs to [0.5, 1] with 0.6: mean p 0.55, mean y 0.5
    assert metrics.expected_calibration_error([0, 1], [0.5, 0.6], n_bins=2) == pytest.approx(0.05)
    # 0.2 = 3/15 in floating point lands in bin 3 with 0.25 (not bin 2 with 0.15)
    y, p = [0, 1, 0], [0.2, 0.25, 0.15]
    assert metrics.expected_calibration_error(y, p) == pytest.approx((abs(0.225 - 0.5) * 2 + 0.15) / 3)


# ---------------------------------------------------------------- summarize

def test_summarize_per_label():
    rng = np.random.default_rng(7)
    n = 3000
    p = rng.uniform(0.01, 0.9, size=(n, 2))
    y = (rng.random((n, 2)) < p).astype(int)
    s = metrics.summarize(["click", "like"], y, p)
    assert set(s) == {"click", "like"}
    for j, name in enumerate(["click", "like"]):
        assert set(s[name]) == {"ne", "auc", "ece", "base_rate", "n"}
        assert s[name]["n"] == n
        assert s[name]["base_rate"] == pytest.approx(y[:, j].mean())
        assert s[name]["auc"] == pytest.approx(metrics.auc(y[:, j], p[:, j]))
        assert s[name]["ne"] == pytest.approx(metrics.normalized_entropy(y[:, j], p[:, j]))
        assert s[name]["ece"] == pytest.approx(metrics.expected_calibration_error(y[:, j], p[:, j]))
        assert s[name]["auc"] > 0.7 and s[name]["ne"] < 1.0 and s[name]["ece"] < 0.05


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("fn", [metrics.auc, metrics.normalized_entropy,
                                metrics.expected_calibration_error])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="shape"):
        fn([0, 1, 1], [0.1, 0.2])


@pytest.mark.parametrize("fn", [metrics.auc, metrics.normalized_entropy,
                                metrics.expected_calibration_error])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_p_raises(fn, bad):
    with pytest.raises(ValueError, match="finite"):
        fn([0, 1, 1], [0.1, bad, 0.2])


@pytest.mark.parametrize("fn", [metrics.normalized_entropy, metrics.expected_calibration_error])
def test_probability_out_of_range_raises(fn):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn([0, 1], [0.1, 1.5])


def test_non_binary_labels_raise():
    with pytest.raises(ValueError, match="0 and 1"):
        metrics.auc([0, 2, 1], [0.1, 0.2, 0.3])


def test_summarize_validation():
    y = np.zeros((4, 2))
    with pytest.raises(ValueError, match="shape"):
        metrics.summarize(["a", "b"], y, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="label names"):
        metrics.summarize(["a"], y, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        metrics.summarize(["a"], np.zeros(4), np.zeros(4))
    p = np.full((4, 2), 0.5)
    p[2, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        metrics.summarize(["a", "b"], y, p)
