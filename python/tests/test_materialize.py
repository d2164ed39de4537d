"""The output-topic materializer's logic (sirenrope.materialize.WindowStore), without Kafka.

Messages are built as the daemon builds them (one delta per user per micro-batch holding the
newest rows the batch appended, snapshots of the whole window) from the model's own
incremental decode, then applied, repeated, dropped and reordered the ways the output topic
can deliver them; the windows must equal the reference caches bit for bit, and scores must
equal the model's (and the golden files' candidate logits). The Kafka loop is exercised on
the real broker by integration_tests/api_test.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from helpers import random_events, seeded_model, small_config
from sirenrope.bundle import load_bundle
from sirenrope.features import EventError, featurize
from sirenrope.golden import DEFAULT_DIR
from sirenrope.materialize import (Applied, MessageError, WindowIncomplete, WindowStore,
                                   decode_message, encode_message, score_cache)
from sirenrope.safetensors_io import bf16_to_f32, decode, f32_to_bf16

GOLDEN = os.path.normpath(DEFAULT_DIR)
MODEL_ID = "m" * 64
W = 8


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return seeded_model(small_config(window=W), seed=3)


class Daemon:
    """The daemon's publishing rule over the reference model: events are decoded in batches,
    each batch publishes per user a delta of min(events of the user in the batch, rows) newest
    rows, and a snapshot of the whole window when asked."""

    def __init__(self, model, dtype="F32"):
        self.model = model
        self.caches = {}
        self.dtype = dtype
        self.offset = 0

    def message(self, user, rows, kind):
        c = self.caches[user]
        n = c.rows if kind == "snapshot" else rows
        return encode_message(kind, user, MODEL_ID, [t[c.rows - n:].numpy() for t in c.k],
                              [t[c.rows - n:].numpy() for t in c.v], c.pos[c.rows - n:].numpy(),
                              c.last_ts_ms, source_offset=self.offset, dtype=self.dtype)

    def batch(self, events, snapshots=()):
        """Decodes one batch (events of several users, log order); returns its messages."""
        per_user = {}
        for ev in events:
            per_user.setdefault(ev["user_id"], []).append(ev)
        out = []
        for user, evs in per_user.items():
            cache = self.caches.setdefault(user, self.model.new_cache(0))
            arrays = featurize(evs, self.model.cfg)
            for i in range(len(evs)):
                self.model.decode(cache, arrays, i)
            self.offset += len(evs)
            out.append(self.message(user, min(len(evs), cache.rows), "delta"))
            if user in snapshots:
                out.append(self.message(user, cache.rows, "snapshot"))
        return out

    def expire(self, user):
        """A TTL restart: the user's next event starts a fresh history at position 0."""
        self.caches[user] = self.model.new_cache(0)


def interleaved(users, n, seed):
    evs = []
    for i, u in enumerate(users):
        evs += random_events(n, seed=seed + i, user=u)
    evs.sort(key=lambda e: (e["ts_ms"], e["user_id"]))
    return evs


def batches(events, seed):
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(events):
        n = int(rng.integers(1, 25))
        out.append(events[i:i + n])
        i += n
    return out


def assert_window_equals(store, user, cache):
    got = store.kv_cache(user)
    assert got.next_pos == cache.next_pos
    assert torch.equal(got.pos, cache.pos)
    for b in range(len(cache.k)):
        assert torch.equal(got.k[b], cache.k[b]), f"{user}: k.{b}"
        assert torch.equal(got.v[b], cache.v[b]), f"{user}: v.{b}"
    assert got.last_ts_ms == cache.last_ts_ms


def candidates(n, seed):
    return [{k: v for k, v in e.items() if k in ("item", "attrs")}
            for e in random_events(n, seed=seed, user="cand")]


def test_deltas_rebuild_every_window_and_score_like_the_model(model):
    users = ["u-a", "u/b", "u c", "ü-d"]
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    outcomes = []
    for batch in batches(interleaved(users, 30, 1), 2):
        for msg in daemon.batch(batch):
            outcomes.append(store.apply(msg)[0])
    assert set(outcomes) == {Applied.NEW, Applied.APPLIED}
    assert store.needs_snapshot() == []
    cands = candidates(5, 99)
    ts = 1767571200000 + 400 * 86_400_000
    for user in users:
        cache = daemon.caches[user]
        assert cache.next_pos == 30 and cache.rows == W
        assert_window_equals(store, user, cache)
        want = torch.sigmoid(model.score_candidates(
            cache, featurize([dict(c, ts_ms=ts) for c in cands], model.cfg,
                             need_actions=False))).numpy()
        got = store.score(user, cands, ts)
        assert np.array(
            [[row[lab.name] for lab in model.cfg.schema.labels] for row in got]) == \
            pytest.approx(want, abs=0)


def test_a_delta_of_a_batch_with_more_events_than_the_window_holds_the_window(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    [msg] = daemon.batch(random_events(3 * W, seed=4, user="u"))
    m = decode_message(msg)
    assert m.rows == W and int(m.pos[0]) == 2 * W
    assert store.apply(msg) == (Applied.NEW, "u")
    assert_window_equals(store, "u", daemon.caches["u"])


def test_at_least_once_repeats_are_dropped_by_position(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    sent = []
    for batch in batches(interleaved(["a", "b"], 25, 5), 6):
        sent += daemon.batch(batch)
    # A redo from some stored offset publishes the later batches again, after what was sent
    # (and, in a redo that batches differently, deltas straddling the held rows).
    for msg in sent + sent[len(sent) // 3:] + sent[-4:]:
        store.apply(msg)
    assert store.stats[Applied.DUPLICATE] > 0
    for user in ("a", "b"):
        assert_window_equals(store, user, daemon.caches[user])


def test_a_redo_batched_differently_continues_the_window(model):
    evs = random_events(12, seed=7, user="u")
    first = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    for m in first.batch(evs[:3]) + first.batch(evs[3:5]):
        store.apply(m)
    redo = Daemon(model)  # The redo starts from the state after event 3, batched otherwise.
    redo.batch(evs[:3])
    assert store.apply(redo.batch(evs[3:9])[0])[0] == Applied.APPLIED  # Rows 3..8 over 3..4.
    assert_window_equals(store, "u", redo.caches["u"])


def test_a_snapshot_replaces_the_window_and_a_stale_one_is_kept_out(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    evs = random_events(20, seed=8, user="u")
    msgs = daemon.batch(evs[:10], snapshots={"u"})
    snap_at_10 = msgs[1]
    assert decode_message(snap_at_10).kind == "snapshot"
    store.apply(msgs[1])  # A reader that starts at the snapshot needs nothing before it.
    assert_window_equals(store, "u", daemon.caches["u"])
    store.apply(daemon.batch(evs[10:14])[0])
    assert store.apply(snap_at_10)[0] == Applied.STALE  # A redo's older snapshot.
    assert_window_equals(store, "u", daemon.caches["u"])
    snap_at_14 = daemon.message("u", 0, "snapshot")
    assert store.apply(snap_at_14)[0] == Applied.APPLIED
    assert_window_equals(store, "u", daemon.caches["u"])


def test_a_gap_marks_the_user_and_a_snapshot_or_a_whole_window_of_deltas_mends_it(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    evs = random_events(40, seed=9, user="u")
    store.apply(daemon.batch(evs[:5])[0])
    daemon.batch(evs[5:7])  # Lost (retention, or a reader that skipped it).
    assert store.apply(daemon.batch(evs[7:9])[0])[0] == Applied.GAP
    assert store.needs_snapshot() == ["u"]
    with pytest.raises(WindowIncomplete, match="waiting for a snapshot"):
        store.score("u", candidates(2, 1), evs[9]["ts_ms"])
    store.apply(daemon.batch(evs[9:11])[0])  # Extends the rows after the gap, still short.
    assert store.needs_snapshot() == ["u"]
    store.apply(daemon.message("u", 0, "snapshot"))
    assert store.needs_snapshot() == []
    assert_window_equals(store, "u", daemon.caches["u"])
    # Another gap; then deltas reach W rows past it: the window is whole again, exactly.
    daemon.batch(evs[11:12])
    assert store.apply(daemon.batch(evs[12:15])[0])[0] == Applied.GAP
    for i in range(15, 15 + W - 3):
        store.apply(daemon.batch(evs[i:i + 1])[0])
    assert store.needs_snapshot() == []
    assert_window_equals(store, "u", daemon.caches["u"])


def test_a_reader_starting_mid_topic_waits_for_a_snapshot(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    evs = random_events(6, seed=10, user="u")
    daemon.batch(evs[:3])
    assert store.apply(daemon.batch(evs[3:5])[0])[0] == Applied.GAP
    with pytest.raises(WindowIncomplete):
        store.kv_cache("u")


def test_a_restarted_history_replaces_the_old_one(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    evs = random_events(60, seed=11, user="u")
    store.apply(daemon.batch(evs[:12])[0])
    daemon.expire("u")  # state.user_ttl_ms: a delta starting at position 0 again.
    assert store.apply(daemon.batch(evs[12:14])[0])[0] == Applied.RESTARTED
    assert store.get("u").next_pos == 2 and store.get("u").restarts == 1
    assert_window_equals(store, "u", daemon.caches["u"])
    store.apply(daemon.batch(evs[14:40])[0])
    # A fresh history whose first batch held more than W events: its delta is a whole window
    # starting above 0, with next_pos below what was held.
    daemon.expire("u")
    m = daemon.batch(evs[40:40 + W + 3])[0]
    assert int(decode_message(m).pos[0]) == 3
    assert store.apply(m)[0] == Applied.RESTARTED
    assert_window_equals(store, "u", daemon.caches["u"])


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_narrow_dtypes_widen_exactly(model, dtype):
    daemon = Daemon(model, dtype=dtype)
    store = WindowStore(W, MODEL_ID, model)
    for batch in batches(random_events(20, seed=12, user="u"), 13):
        store.apply(daemon.batch(batch)[0])
    cache = daemon.caches["u"]
    got = store.kv_cache("u")
    assert store.get("u").dtype == dtype
    for b in range(len(cache.k)):
        ref = cache.k[b].numpy()
        want = bf16_to_f32(f32_to_bf16(ref)) if dtype == "BF16" else \
            ref.astype(np.float16).astype(np.float32)
        assert np.array_equal(got.k[b].numpy(), want)
    # Scores from rounded rows are close to the float32 ones, not equal.
    cands = candidates(4, 3)
    ts = int(cache.last_ts_ms) + 60_000
    exact = score_cache(model, cache, cands, ts)
    rounded = store.score("u", cands, ts)
    diff = max(abs(a[k] - b[k]) for a, b in zip(exact, rounded) for k in a)
    assert 0 < diff < 0.05


def test_messages_of_another_model_or_malformed_bytes_change_nothing(model):
    daemon = Daemon(model)
    store = WindowStore(W, MODEL_ID, model)
    evs = random_events(10, seed=14, user="u")
    store.apply(daemon.batch(evs[:4])[0])
    daemon_other = Daemon(model)
    msg = daemon_other.batch(evs[:6])[0].replace(MODEL_ID.encode(), b"x" * 64)
    assert store.apply(msg)[0] == Applied.MODEL_MISMATCH
    assert store.apply(b"not safetensors")[0] == Applied.MALFORMED
    tensors, meta = decode(daemon.batch(evs[4:6])[0])
    meta["rotor.next_pos"] = "7"  # Positions no longer end at next_pos - 1.
    from sirenrope.safetensors_io import encode
    with pytest.raises(MessageError, match="consecutive"):
        decode_message(encode(tensors, meta))
    assert store.apply(encode(tensors, meta))[0] == Applied.MALFORMED
    assert store.get("u").next_pos == 4


def test_an_unknown_user_scores_from_the_empty_window(model):
    store = WindowStore(W, MODEL_ID, model)
    cands = candidates(3, 5)
    ts = 1767571200000
    assert store.score("nobody", cands, ts) == score_cache(model, model.new_cache(0), cands, ts)
    with pytest.raises(EventError, match="features"):
        store.score("nobody", [{"item": {"features": [1.0]}}], ts)


@pytest.mark.parametrize("bundle_name,case", [("siren", "long"), ("time_linear", "far"),
                                              ("sine_only", "short")])
def test_a_snapshot_of_the_golden_window_scores_the_golden_candidates(bundle_name, case):
    """The golden files' window (cache.k.<b>, cache.v.<b>, cache.pos), sent as a snapshot,
    scores their candidates as the full-sequence reference does (cand.logits)."""
    manifest = json.load(open(os.path.join(GOLDEN, "manifest.json")))
    bundle = load_bundle(os.path.join(GOLDEN, manifest["bundles"][bundle_name]["file"]))
    stem = os.path.join(GOLDEN, f"{bundle_name}.{case}")
    want, meta = decode(open(stem + ".expected.safetensors", "rb").read())
    n_blocks = bundle.config.n_blocks
    pos = want["cache.pos"]
    if int(pos[-1]) + 1 > len(pos) and len(pos) < bundle.config.window:
        pytest.skip("a window that does not start at 0 is not a daemon's")
    msg = encode_message("snapshot", "golden", bundle.model_id,
                         [want[f"cache.k.{b}"] for b in range(n_blocks)],
                         [want[f"cache.v.{b}"] for b in range(n_blocks)], pos, 0)
    store = WindowStore.from_bundle(bundle)
    assert store.apply(msg)[0] == Applied.NEW
    cands = [json.loads(line) for line in open(stem + ".candidates.jsonl")]
    got = store.score("golden", cands, int(meta["request_ts_ms"]))
    expect = 1 / (1 + np.exp(-want["cand.logits"].astype(np.float64)))
    labels = [lab.name for lab in bundle.config.schema.labels]
    assert np.abs(np.array([[r[n] for n in labels] for r in got]) - expect).max() <= 1e-5
