"""Intervals and paired tests over seeds, and the comparison tables built on them."""

from __future__ import annotations

import json
import math

import pytest
from sirenrope import compare, synth
from sirenrope.stats import mean_ci, paired


def test_mean_ci_is_student_t():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    # t(0.975, 2 dof) = 4.302653; sem = 1 / sqrt(3).
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_ci([5.0])[1]) and mean_ci([5.0])[0] == 5.0
    assert all(math.isnan(x) for x in mean_ci([]))


def test_paired_test_at_the_tabulated_5_percent_point():
    # Differences c + (-1, -1, 1, 1): sem = sqrt(4/3) / 2, so t = c / sem; t(0.975, 3 dof) =
    # 3.182446 puts the two-sided p at 0.05.
    c = 3.182446 * math.sqrt(4 / 3) / 2
    base = [0.90, 0.91, 0.92, 0.93]
    other = [b + c + e for b, e in zip(base, (-1, -1, 1, 1))]
    r = paired(base, other)
    assert r["n"] == 4 and r["diff"] == pytest.approx(c)
    assert r["p"] == pytest.approx(0.05, abs=1e-5)
    assert r["ci"] == pytest.approx(c, rel=1e-5)  # the interval just touches 0 at p = 0.05


def test_paired_edge_cases():
    assert paired([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    assert paired([1.0, 2.0], [1.5, 2.5])["p"] == 0.0
    assert math.isnan(paired([1.0], [2.0])["p"])
    with pytest.raises(ValueError, match="differ in size"):
        paired([1.0, 2.0], [1.0])


def _runs(values):
    return [{"labels": {"click": {"ne": ne, "auc": auc, "ece": 0.01}}} for ne, auc in values]


def test_the_tables_show_intervals_and_differences_to_ordinal():
    results = {"ordinal": _runs([(0.92, 0.69), (0.93, 0.70), (0.91, 0.68)]),
               "siren": _runs([(0.90, 0.71), (0.915, 0.715), (0.895, 0.70)])}
    summary = compare.summarize_runs(results, ["click"])
    ne = summary["siren"]["click.ne"]
    assert ne["mean"] == pytest.approx(0.90333333)
    assert ne["vs_ordinal"]["diff"] == pytest.approx(-0.01666667)
    assert ne["vs_ordinal"]["p"] < 0.05
    assert "vs_ordinal" not in summary["ordinal"]["click.ne"]
    text = compare.format_markdown(summary, ["click"])
    assert "| `siren` | 0.9033 ± " in text and "Minus `ordinal`" in text
    assert "| `siren` | -0.0167 ± " in text


def test_compare_runs_end_to_end(tmp_path, capsys):
    data = tmp_path / "events.jsonl"
    synth.write_jsonl(str(data), 3000, seed=2, n_users=20)
    out = tmp_path / "c.json"
    assert compare.main(["--data", str(data), "--variants", "ordinal", "siren", "--seeds", "0",
                         "1", "--epochs", "1", "--d-model", "16", "--window", "8",
                         "--chunk", "64", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `ordinal` |" in printed and "Minus `ordinal`" in printed
    saved = json.loads(out.read_text())
    assert len(saved["runs"]["siren"]) == 2
    assert set(saved["summary"]["siren"]["click.auc"]["vs_ordinal"]) == {"diff", "ci", "p", "n"}
