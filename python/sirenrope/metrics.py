"""Evaluation metrics for binary engagement predictions (numpy only).

* ``normalized_entropy``: mean log loss divided by the entropy of the base rate
  (He et al. 2014, "Practical lessons from predicting clicks on ads at Facebook").
  1.0 = no better than always predicting the base rate; lower is better.
* ``auc``: ROC AUC via the Mann-Whitney rank statistic, ties get average ranks.
* ``expected_calibration_error``: equal-width bins over [0, 1].
* ``summarize``: all of the above per label for [N, n_labels] arrays.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_1d(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y and p must be 1-D, got shapes {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"y and p must have the same shape, got {y.shape} and {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"p must be finite, found {int(np.sum(~np.isfinite(p)))} non-finite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y must contain only 0 and 1")
    return y, p


def _check_probabilities(p: np.ndarray) -> None:
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"p must lie in [0, 1], got range [{p.min()}, {p.max()}]")


def normalized_entropy(y, p, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of ``p`` divided by the entropy of ``mean(y)``.

    ``p`` is clipped to [eps, 1 - eps]. Returns nan when the set is empty or the
    base rate is 0 or 1 (the normaliser is then 0).
    """
    y, p = _check_1d(y, p)
    _check_probabilities(p)
    if y.size == 0:
        return float("nan")
    base = float(y.mean())
    if base <= 0.0 or base >= 1.0:
        return float("nan")
    pc = np.clip(p, eps, 1.0 - eps)
    log_loss = -np.mean(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))
    base_entropy = -(base * np.log(base) + (1.0 - base) * np.log1p(-base))
    return float(log_loss / base_entropy)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = xs.size
    # start index of each run of equal values
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = xs[1:] != xs[:-1]
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], n)  # exclusive
    run_rank = (run_start + run_end + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, run_end - run_start)
    return ranks


def auc(y, p) -> float:
    """ROC AUC (probability a random positive outranks a random negative, ties
    count 1/2). Returns nan unless both classes are present. ``p`` may be any
    finite score, not only a probability."""
    y, p = _check_1d(y, p)
    n_pos = int(np.sum(y == 1))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(p)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def expected_calibration_error(y, p, n_bins: int = 15) -> float:
    """Sum over non-empty equal-width bins of (n_bin / N) * |mean(p) - mean(y)|.

    Bin b covers [b / n_bins, (b + 1) / n_bins); p == 1.0 falls in the last bin.
    Returns nan for an empty set.
    """
    y, p = _check_1d(y, p)
    _check_probabilities(p)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if y.size == 0:
        return float("nan")
    b = np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y, minlength=n_bins)
    # (n_bin / N) * |sum_p / n_bin - sum_y / n_bin| == |sum_p - sum_y| / N
    return float(np.sum(np.abs(sum_p - sum_y)) / y.size)


def summarize(label_names: Sequence[str], y, p) -> dict[str, dict[str, float]]:
    """Per-label metrics for ``y`` and ``p`` of shape [N, n_labels].

    Returns ``{label: {"ne", "auc", "ece", "base_rate", "n"}}``.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    names = list(label_names)
    if y.ndim != 2 or p.ndim != 2:
        raise ValueError(f"y and p must be 2-D [N, n_labels], got shapes {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"y and p must have the same shape, got {y.shape} and {p.shape}")
    if y.shape[1] != len(names):
        raise ValueError(f"got {len(names)} label names for {y.shape[1]} label columns")
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        yj, pj = y[:, j], p[:, j]
        out[name] = {
            "ne": normalized_entropy(yj, pj),
            "auc": auc(yj, pj),
            "ece": expected_calibration_error(yj, pj),
            "base_rate": float(yj.mean()) if yj.size else float("nan"),
            "n": int(yj.size),
        }
    return out
