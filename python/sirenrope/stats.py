"""Confidence intervals and paired tests over training seeds (scipy's Student t).

A study trains each variant once per seed on the same data and split; the seeds are the
samples. ``mean_ci`` gives a metric's mean over seeds and the half-width of its 95 % interval
(Student t with n - 1 degrees of freedom); ``paired`` compares two variants seed by seed (the
same seed shares initialisation draws and batch order), which removes the part of the spread
the two share: its interval and two-sided p-value are those of the per-seed differences.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _st


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the `level` interval); the half-width is nan below 2 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    sem = v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(_st.t.ppf(0.5 + level / 2, v.size - 1) * sem)


def paired(base: Sequence[float], other: Sequence[float], level: float = 0.95) -> dict:
    """other - base, seed by seed: {"diff", "ci", "p", "n"}.

    "ci" is the half-width of the `level` interval of the mean difference, "p" the two-sided
    paired t-test's p-value (1.0 when every difference is 0; nan below 2 pairs)."""
    a = np.asarray(base, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} and {b.size}")
    d = b - a
    diff, ci = mean_ci(d, level)
    if d.size < 2:
        p = float("nan")
    elif np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0
    else:
        p = float(_st.ttest_rel(b, a).pvalue)
    return {"diff": diff, "ci": ci, "p": p, "n": int(d.size)}
