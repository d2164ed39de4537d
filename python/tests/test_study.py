"""The study's one command, in its smoke size: every output written, every number present."""

from __future__ import annotations

import json

import pytest

from sirenrope import study


def test_the_study_runs_end_to_end_in_its_smoke_size(tmp_path, capsys):
    out = tmp_path / "study"
    assert study.main(["--out", str(out), "--smoke", "--variants", "ordinal", "siren",
                       "--extra", "siren_no_attrs", "siren_genre", "siren_no_cyclical",
                       "ordinal_time_in_item", "siren_per_pair", "siren_act_proj",
                       "siren_history_pos", "siren_proj_pair", "--seeds", "0", "1",
                       "--epochs", "1"]) == 0
    for name in ("study.md", "study.json", "metrics.png", "angles.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "study.json").read_text())["results"]
    assert set(saved) == {"synthetic", "movielens"}
    syn, ml = saved["synthetic"], saved["movielens"]
    both = {"ordinal", "siren", "siren_no_cyclical", "ordinal_time_in_item", "siren_per_pair",
            "siren_act_proj", "siren_history_pos", "siren_proj_pair"}
    assert set(syn["runs"]) == both | {"siren_no_attrs"}
    assert set(ml["runs"]) == both | {"siren_genre"}
    assert ml["labels"] == ["rating_ge_4", "rating_ge_4_5"]
    # Two seeds each, a loss per epoch, a paired difference to ordinal, what siren learned.
    assert all(len(r) == 2 for r in ml["runs"].values())
    assert all(len(seed) == 1 for per in ml["losses"].values() for seed in per)
    assert ml["summary"]["siren_genre"]["rating_ge_4.auc"]["vs_ordinal"]["n"] == 2
    assert len(ml["angles"]["by_hour"]) == 2 and len(ml["angles"]["by_hour"][0]) == 24
    # The fidelity variants are what they say: per-pair angles, projections, positions.
    pp = ml["configs"]["siren_per_pair"]
    assert pp["d_angle"] == pp["d_model"] // pp["n_heads"] // 2 > ml["configs"]["siren"]["d_angle"]
    assert ml["configs"]["siren_act_proj"]["act_proj"] is True
    both_fixes = ml["configs"]["siren_proj_pair"]
    assert both_fixes["act_proj"] is True and both_fixes["d_angle"] == pp["d_angle"]
    assert ml["train_options"]["siren_history_pos"] == {"positions": "history"}
    assert "SMOKE: not a result" in (out / "study.md").read_text()
    assert "## movielens" in capsys.readouterr().out


def test_runs_in_parallel_processes_give_the_serial_results(tmp_path):
    """--jobs 2 (spawned processes, one thread each) is the same training as one process on
    one thread: the same metrics, bit for bit, in the same seed order."""
    common = ["--smoke", "--datasets", "movielens", "--variants", "ordinal", "siren",
              "--extra", "--seeds", "0", "1", "--epochs", "1", "--threads", "1"]
    assert study.main(["--out", str(tmp_path / "serial")] + common) == 0
    assert study.main(["--out", str(tmp_path / "parallel"), "--jobs", "2"] + common) == 0
    serial, parallel = (json.loads((tmp_path / d / "study.json").read_text())["results"]
                        for d in ("serial", "parallel"))
    for name in ("ordinal", "siren"):
        for a, b in zip(serial["movielens"]["runs"][name], parallel["movielens"]["runs"][name]):
            assert a["labels"] == b["labels"]
    assert serial["movielens"]["angles"] == parallel["movielens"]["angles"]


def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """--device is optional; asking for CUDA without one stops before any training."""
    monkeypatch.setattr(study.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--out", str(tmp_path), "--smoke", "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda: torch sees no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "study.json").exists()
