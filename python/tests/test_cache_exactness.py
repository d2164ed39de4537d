"""Proof that caching is exact: the incremental path reproduces the full forward.

Each test would fail if a cached key went stale, if the window were off by one, or if a
candidate could see another candidate or itself.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from helpers import random_events, seeded_model, small_config
from sirenrope.bundle import BundleError, bundle_bytes
from sirenrope.config import VARIANTS
from sirenrope.features import featurize
from sirenrope.model import make_batch

TOL = 1e-5


def max_decode_error(model, events, start_pos=0) -> float:
    """Max abs difference between decode() and the full forward over every output."""
    cfg = model.cfg
    ev = featurize(events, cfg)
    with torch.no_grad():
        full = model(make_batch([ev], [start_pos], cfg))
    cache = model.new_cache(start_pos)
    err = 0.0
    for i in range(len(ev)):
        out = model.decode(cache, ev, i)
        pairs = [(out.angles, full["angles"][0, i]), (out.act_angles, full["act_angles"][0, i]),
                 (out.hidden, full["hidden"][0, i]), (out.logits, full["logits"][0, i])]
        pairs += [(out.k[b], full["k"][b][0, i]) for b in range(cfg.n_blocks)]
        pairs += [(out.v[b], full["v"][b][0, i]) for b in range(cfg.n_blocks)]
        err = max(err, max(float((a - b).abs().max()) for a, b in pairs))
        assert cache.rows == min(i + 1, cfg.window)
    return err


@pytest.mark.parametrize("window", [4, 64, 512])
@pytest.mark.parametrize("length", [1, 2, 5, 17, 63, 64, 65, 150, 300])
def test_incremental_decode_equals_full_forward(length, window):
    model = seeded_model(small_config(window=window), seed=length)
    assert max_decode_error(model, random_events(length, seed=length)) <= TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_cache_exact(variant):
    model = seeded_model(small_config(variant=variant, window=6), seed=3)
    assert max_decode_error(model, random_events(40, seed=3)) <= TOL


@pytest.mark.parametrize("edit", [dict(variant="siren", angle_time_inputs="offset"),
                                  dict(variant="ordinal", time_in_item=True)])
def test_the_studys_offline_ablations_are_cache_exact_too(edit):
    """Without cyclical features, and with time as an item feature: still token-local."""
    model = seeded_model(small_config(window=6, **edit), seed=4)
    assert max_decode_error(model, random_events(40, seed=4)) <= TOL


@pytest.mark.parametrize("variant", ["siren", "ordinal", "none"])
def test_action_attention_projections_are_cache_exact(variant):
    """act_proj: the action attention's K = rot(Wk h) and V = Wv a are cached, Q = rot(Wq h)
    and Wo apply at read time; decode and candidates match the full forward."""
    model = seeded_model(small_config(variant=variant, window=6, act_proj=True), seed=6)
    with torch.no_grad():  # the projections differ from identity, or this proves nothing
        assert float((model.act_wk.weight - model.act_wq.weight).abs().max()) > 0.01
    events = random_events(40, seed=6)
    assert max_decode_error(model, events) <= TOL
    cfg = model.cfg
    ev = featurize(events[:20], cfg)
    cache = model.new_cache(0)
    for i in range(len(ev)):
        model.decode(cache, ev, i)
    cands = _candidates(5, events[19]["ts_ms"] + 1000, seed=7)
    scores = model.score_candidates(cache, featurize(cands, cfg, need_actions=False))
    for r, c in enumerate(cands):
        with torch.no_grad():
            full = model(make_batch([featurize(events[:20] + [c], cfg)], [0], cfg))["logits"]
        assert float((scores[r] - full[0, -1]).abs().max()) <= 1e-6


def test_exact_at_positions_near_2_pow_31():
    model = seeded_model(small_config(window=8), seed=5)
    assert max_decode_error(model, random_events(30, seed=5), start_pos=2**31 - 12) <= TOL


def test_item_id_tables_are_cache_exact():
    cfg = small_config(window=5)
    cfg.schema.item.kind, cfg.schema.item.dim, cfg.schema.item.buckets = "id", 6, 50
    model = seeded_model(cfg, seed=9)
    assert max_decode_error(model, random_events(25, seed=9)) <= TOL


def _candidates(n, ts_ms, seed):
    return [dict(e, ts_ms=ts_ms, action={}) for e in random_events(n, seed=seed, user="cand")]


@pytest.mark.parametrize("length,window", [(1, 8), (20, 8), (20, 64), (70, 16)])
def test_cached_candidate_scores_equal_full_forward_with_candidate_appended(length, window):
    model = seeded_model(small_config(window=window), seed=11)
    cfg = model.cfg
    events = random_events(length, seed=length)
    ev = featurize(events, cfg)
    cache = model.new_cache(0)
    for i in range(len(ev)):
        model.decode(cache, ev, i)
    t_req = events[-1]["ts_ms"] + 90_000
    cands = _candidates(16, t_req, seed=99)
    scores = model.score_candidates(cache, featurize(cands, cfg, need_actions=False))
    assert scores.shape == (16, cfg.n_labels)
    for r, c in enumerate(cands):
        seq = featurize(events + [c], cfg)
        with torch.no_grad():
            full = model(make_batch([seq], [0], cfg))["logits"][0, -1]
        # Measured at most 1.2e-7 (one float32 ulp of the logits); 1e-6 leaves room for BLAS.
        assert float((scores[r] - full).abs().max()) <= 1e-6


def test_candidates_do_not_see_each_other():
    model = seeded_model(small_config(), seed=12)
    cfg = model.cfg
    events = random_events(12, seed=12)
    ev = featurize(events, cfg)
    cache = model.new_cache(0)
    for i in range(len(ev)):
        model.decode(cache, ev, i)
    cands = featurize(_candidates(8, events[-1]["ts_ms"] + 1, seed=13), cfg, need_actions=False)
    together = model.score_candidates(cache, cands)
    for r in range(8):
        alone = model.score_candidates(cache, cands.slice(r, r + 1))
        assert torch.equal(alone[0], together[r]) or float((alone[0] - together[r]).abs().max()) < 1e-6
    # Scoring must not touch the cache.
    assert cache.rows == min(12, cfg.window) and cache.next_pos == 12


def test_own_action_never_reaches_own_prediction_and_future_never_reaches_past():
    model = seeded_model(small_config(window=16), seed=14)
    cfg = model.cfg
    events = random_events(20, seed=14)
    changed = copy.deepcopy(events)
    changed[10]["action"] = {"click": 1, "like": 1, "share": 1, "dwell_s": 999.0}
    changed[15]["item"]["features"] = [5.0] * 8
    with torch.no_grad():
        a = model(make_batch([featurize(events, cfg)], [0], cfg))["logits"][0]
        b = model(make_batch([featurize(changed, cfg)], [0], cfg))["logits"][0]
    assert torch.equal(a[:11], b[:11])  # up to and including the event whose action changed
    assert not torch.allclose(a[11:], b[11:])  # later events do see it


def test_events_older_than_the_window_have_no_influence():
    # Influence flows through at most n_layers hops of `window` events each, plus the
    # action attention; beyond that reach an event is invisible.
    cfg = small_config(window=3, n_layers=1)
    model = seeded_model(cfg, seed=15)
    events = random_events(30, seed=15)
    changed = copy.deepcopy(events)
    changed[5]["item"]["features"] = [-3.0] * 8
    changed[5]["action"] = {"click": 1, "dwell_s": 500.0}
    with torch.no_grad():
        a = model(make_batch([featurize(events, cfg)], [0], cfg))["logits"][0]
        b = model(make_batch([featurize(changed, cfg)], [0], cfg))["logits"][0]
    reach = cfg.window * (cfg.n_layers + 1)
    assert not torch.allclose(a[6], b[6])
    assert torch.equal(a[5 + reach + 1:], b[5 + reach + 1:])


def test_reverse_order_feature_breaks_cache_exactness_and_cannot_be_exported():
    """The demo code's (S-1-i)/S SIREN input changes every old key whenever an event arrives:
    the full forward (what training sees) and the cached path disagree. This is why serving
    excludes it."""
    model = seeded_model(small_config(window=16, reverse_order=True), seed=16)
    assert max_decode_error(model, random_events(30, seed=16)) > 1e-3
    with pytest.raises(BundleError, match="reverse_order"):
        bundle_bytes(model)


def test_batched_decode_equals_one_user_at_a_time():
    """Users with different history lengths decoded together give each user's own result."""
    model = seeded_model(small_config(window=8), seed=17)
    cfg = model.cfg
    users = [featurize(random_events(n, seed=40 + n, user=f"u{n}"), cfg) for n in (1, 3, 9, 20)]
    alone = [model.new_cache(0) for _ in users]
    together = [model.new_cache(0) for _ in users]
    for step in range(20):
        active = [u for u, ev in enumerate(users) if step < len(ev)]
        want = [model.decode(alone[u], users[u], step) for u in active]
        rows = [users[u].slice(step, step + 1) for u in active]
        batch = type(rows[0])(*(np.concatenate([getattr(r, f) for r in rows])
                                for f in ("item", "actions", "labels", "cat", "ts_ms")))
        got = model.decode_batch([together[u] for u in active], batch)
        for w, g in zip(want, got):
            assert float((w.logits - g.logits).abs().max()) <= 1e-5
            for b in range(cfg.n_blocks):
                assert float((w.k[b] - g.k[b]).abs().max()) <= 1e-5
                assert float((w.v[b] - g.v[b]).abs().max()) <= 1e-5
    for a, t in zip(alone, together):
        assert a.next_pos == t.next_pos and torch.equal(a.pos, t.pos)
