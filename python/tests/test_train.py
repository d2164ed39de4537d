"""Trainer and evaluator end to end on a small synthetic log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import random_events, seeded_model, small_config
from sirenrope import evaluate, synth, train
from sirenrope.features import featurize
from sirenrope.model import make_batch
from sirenrope.bundle import load_bundle


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "events.jsonl"
    synth.write_jsonl(str(path), 20000, seed=3, n_users=100)
    return path


def test_chunking_with_window_context_equals_the_whole_history(log_path):
    """Training cuts long histories into chunks preceded by window * n_blocks events of
    context; the predictions must equal those of the uncut history."""
    cfg = small_config(window=6)
    model = seeded_model(cfg, seed=31)
    hist = train.read_histories(str(log_path), cfg)[:5]
    cutoff = train.time_cutoff(hist, 0.5)
    chunks = train.make_chunks(hist, 17, cfg)
    y1, p1 = train.predict(model, chunks, cutoff, batch_size=7)
    whole = [train.Chunk(h.events, 0, 0) for h in hist]
    y2, p2 = train.predict(model, whole, cutoff, batch_size=2)
    assert len(y1) > 100 and np.array_equal(y1, y2)
    assert np.abs(p1 - p2).max() < 1e-5


def test_chunks_count_positions_from_their_own_start():
    """lambda's gradient must not depend on where a chunk sits in its history. Positions are
    counted from each chunk's start; counted from the history's (as before), the same chunk's
    gradient at position 2**40 is rounding noise, not the gradient."""
    cfg = small_config(window=6)
    model = seeded_model(cfg, seed=7)
    events = featurize(random_events(40, seed=9), cfg)
    hist = [train.UserHistory("u1", events)]
    chunks = train.make_chunks(hist, 17, cfg)
    assert len(chunks) == 3 and all(c.start_pos == 0 for c in chunks)

    def lambda_grad(start: int) -> float:
        model.zero_grad()
        batch = make_batch([events], [start], cfg)
        logits = model(batch)["logits"]
        F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
        grads = [p.grad for n, p in model.named_parameters() if n.endswith("lam")]
        return float(sum(g.sum() for g in grads))

    at_zero, shifted, far = lambda_grad(0), lambda_grad(17), lambda_grad(2**40)
    assert abs(shifted - at_zero) <= 1e-3 * abs(at_zero) + 1e-6
    assert abs(far - at_zero) > 10 * abs(at_zero)


def test_train_export_and_evaluate_end_to_end(log_path, tmp_path, capsys):
    out = tmp_path / "b.safetensors"
    metrics_out = tmp_path / "m.json"
    rc = train.main(["--data", str(log_path), "--out", str(out), "--metrics-out",
                     str(metrics_out), "--epochs", "3", "--batch-size", "8", "--d-model", "16", "--window", "16",
                     "--chunk", "64", "--seed", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    for label in synth.LABELS:
        assert label in printed
    m = json.loads(metrics_out.read_text())
    assert set(m["labels"]) == set(synth.LABELS)
    for label, row in m["labels"].items():
        assert np.isfinite(row["ne"]) and 0 <= row["auc"] <= 1 and 0 <= row["ece"] <= 1
    # A trained model beats the base rate on clicks even on this small log.
    assert m["labels"]["click"]["ne"] < 1.0 and m["labels"]["click"]["auc"] > 0.55
    bundle = load_bundle(out)
    assert bundle.metrics["labels"] == m["labels"]
    hist = train.read_histories(str(log_path), bundle.config)
    again = train.evaluate(bundle.model, hist, 0.2, chunk=64)
    assert again["labels"]["click"]["auc"] == pytest.approx(m["labels"]["click"]["auc"], abs=1e-9)


def test_training_is_deterministic_for_a_seed(log_path):
    cfg = small_config(d_model=16, window=8)
    hist = train.read_histories(str(log_path), cfg)[:10]
    kw = dict(epochs=1, batch_size=4, lr=3e-3, eval_fraction=0.3, chunk=32, log=lambda s: None)
    m1, _ = train.train(cfg, hist, seed=5, **kw)
    m2, _ = train.train(cfg, hist, seed=5, **kw)
    for (n1, a), (n2, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b), n1


def test_a_malformed_log_line_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"user_id": "u"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        train.read_histories(str(p), small_config())



def test_config_file_sets_defaults_and_flags_win(log_path, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"d_model": 16, "window": 8, "epochs": 1, "chunk": 64,
                                         "variant": "ordinal"}}))
    out = tmp_path / "b.safetensors"
    assert train.main(["--config", str(cfg), "--data", str(log_path), "--out", str(out),
                       "--window", "12"]) == 0
    b = load_bundle(out)
    assert (b.config.d_model, b.config.window, b.config.variant) == (16, 12, "ordinal")
    capsys.readouterr()
    assert evaluate.main(["--bundle", str(out), "--data", str(log_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for label, row in printed["labels"].items():  # other chunking: equal up to rounding
        for key, value in row.items():
            assert value == pytest.approx(b.metrics["labels"][label][key], abs=1e-6)


@pytest.mark.parametrize("doc,msg", [
    ({"train": {"epoch": 1}}, "train.epoch: unknown setting"),
    ({"train": {"epochs": "1"}}, "train.epochs: expected int"),
    ({"train": {"lr": True}}, "train.lr: expected float"),
    ({"train": {"variant": "alibi"}}, "train.variant: 'alibi' is not one of"),
    ({"synth": {}}, "needs a 'train' object"),
])
def test_bad_config_file_names_the_setting(tmp_path, capsys, doc, msg):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(doc))
    with pytest.raises(SystemExit):
        train.main(["--config", str(cfg), "--data", "x"])
    assert msg in capsys.readouterr().err


def test_evaluate_refuses_a_broken_bundle(tmp_path, capsys, log_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert evaluate.main(["--bundle", str(bad), "--data", str(log_path)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_same_data_settings_and_seed_give_the_same_model_id(log_path, tmp_path, capsys,
                                                             monkeypatch):
    ids = []
    for run in range(2):
        # The two runs take different (fake) wall times; the bundles must not differ for it.
        clock = iter(range(0, 10**6, 1 + 6 * run))
        monkeypatch.setattr(train.time, "time", lambda: float(next(clock)))
        out = tmp_path / f"b{run}.safetensors"
        assert train.main(["--data", str(log_path), "--out", str(out), "--epochs", "1",
                           "--d-model", "16", "--window", "8", "--chunk", "64"]) == 0
        ids.append(load_bundle(out).model_id)
    capsys.readouterr()
    assert ids[0] == ids[1]


def test_training_defaults_follow_the_study(log_path):
    """Since the study (docs/results.md) a trained model has the action attention's
    projections and one learned angle per rotation pair unless told otherwise; the flags (and
    configs/demo.json) still give the model without them."""
    import argparse
    from sirenrope.cli import parse_with_config
    from sirenrope.config import ConfigError

    def config(argv):
        p = argparse.ArgumentParser()
        train.add_model_args(p)
        train.add_training_args(p)
        args = parse_with_config(p, argv, "train")
        hist = train.read_histories(str(log_path), small_config())[:3]
        return train.build_config(args, small_config().schema, hist)

    default = config([])
    assert default.act_proj and default.d_angle == default.n_pairs == 16
    assert config(["--d-model", "32"]).d_angle == 8  # per pair at any width
    with pytest.raises(ConfigError, match="config.d_angle: must be positive, got 0"):
        config(["--d-angle", "0"])  # not "per pair" in disguise
    old = config(["--no-act-proj", "--d-angle", "4"])
    assert not old.act_proj and old.d_angle == 4
    demo = config(["--config", "configs/demo.json"])
    assert demo.act_proj and demo.d_angle == demo.n_pairs
