"""The checked-in golden files agree with the reference model's cached path.

The byte-for-byte reproducibility check is `python -m sirenrope.golden --check` (run by the
test command); this test checks the contents: that the full-forward numbers stored for the
C++ parity tests are what the incremental decode and candidate scoring of the loaded
bundle produce.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sirenrope.bundle import load_bundle
from sirenrope.features import featurize
from sirenrope.golden import DEFAULT_DIR
from sirenrope.safetensors_io import decode

GOLDEN = os.path.normpath(DEFAULT_DIR)
MANIFEST = json.load(open(os.path.join(GOLDEN, "manifest.json")))


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("case", MANIFEST["cases"], ids=lambda c: c["name"])
def test_golden_case_matches_incremental_decode(case):
    bundle = load_bundle(os.path.join(GOLDEN, MANIFEST["bundles"][case["bundle"]]["file"]))
    model, cfg = bundle.model, bundle.config
    stem = os.path.join(GOLDEN, case["name"])
    events = _jsonl(stem + ".events.jsonl")
    with open(stem + ".expected.safetensors", "rb") as f:
        want, meta = decode(f.read())
    assert int(meta["start_pos"]) == case["start_pos"]
    ev = featurize(events, cfg)
    assert np.array_equal(ev.cat, want["inputs.cat"])
    assert np.array_equal(ev.item, want["inputs.item"])
    cache = model.new_cache(case["start_pos"])
    for i in range(len(ev)):
        out = model.decode(cache, ev, i)
        assert np.abs(out.angles.numpy() - want["angles"][i]).max() <= 1e-5
        assert np.abs(out.hidden.numpy() - want["hidden"][i]).max() <= 1e-5
        assert np.abs(out.logits.numpy() - want["logits"][i]).max() <= 1e-4
        for b in range(cfg.n_blocks):
            assert np.abs(out.k[b].numpy() - want[f"k.{b}"][i]).max() <= 1e-5
            assert np.abs(out.v[b].numpy() - want[f"v.{b}"][i]).max() <= 1e-5
    assert np.array_equal(cache.pos.numpy(), want["cache.pos"])
    for b in range(cfg.n_blocks):
        assert np.abs(cache.k[b].numpy() - want[f"cache.k.{b}"]).max() <= 1e-5
    cands = featurize(_jsonl(stem + ".candidates.jsonl"), cfg, need_actions=False)
    assert int(cands.ts_ms[0]) == case["request_ts_ms"]
    with torch.no_grad():
        scores = model.score_candidates(cache, cands).numpy()
    assert np.abs(scores - want["cand.logits"]).max() <= 1e-4


def test_golden_covers_a_sequence_longer_than_the_window_and_positions_near_2_pow_31():
    longest = max(c["events"] - int(MANIFEST["bundles"] and 0) for c in MANIFEST["cases"])
    assert longest > 8
    assert any(c["start_pos"] + c["events"] > 2**31 - 2 for c in MANIFEST["cases"])
    variants = {b["variant"] for b in MANIFEST["bundles"].values()}
    assert {"siren", "time_linear", "siren_sine_only", "siren_dnn_only"} <= variants
