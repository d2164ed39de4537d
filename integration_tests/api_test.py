"""The HTTP API of `rotor serve` on the real broker, through sirenrope.client (CTest `kafka.api`).

One run (exactly-once by default, `--mode at_least_once` for the other) on fresh topics:

  start      `rotor serve` with api.listen 127.0.0.1:0 (the port from its "API listening on"
             line): /healthz 200 at once; /readyz 503 with a reason and the data endpoints
             503 not_ready until the partitions are assigned and restored, then 200
  streaming  events arrive at a fixed rate (`rotor produce --rate`) while users are queried
             and scored: every score equals the PyTorch reference (`sirenrope`'s model decoded
             over the user's first next_pos events, then `score_candidates`) within 1e-5,
             every metadata answer its user's events (rows, next_pos, last event time), and
             every tensors answer the reference window at its next_pos
  errors     every error code over the wire: 400 invalid_json / missing_field / schema (the
             candidate's index and field) / too_many / bad_request / invalid_value, 404
             unknown user and unknown route, 405 (with Allow), 408 for a stalled client, 413,
             431; an unknown user scores as a cold start ("known": false)
  at rest    every user's metadata equals what was produced (rows, next_pos, last event time,
             input partition and offset); the tensors of a user whose last event is its
             partition's last record are byte-identical to the snapshot the daemon published
             for that state (output.snapshot_interval_ms small, the last event sent once the
             user's snapshot clock is due); bf16 and f16 tensors are the f32 ones rounded;
             POST /v1/score equals the single-user scores; the windows materialized from the
             output topic (read_committed) equal the API's rows bit for bit and score equal to
             /score within 1e-5
  metrics    /metrics parses as Prometheus text and counts the requests made by route and
             status (rotor_api_requests_total), and that hot users were read from the
             committed view (rotor_api_state_reads_total{source="hot"})

  /usr/bin/python3 integration_tests/api_test.py --rotor build/debug/app/rotor
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import daemon_test as dt  # noqa: E402  (its Case, Feeder, synth; it puts python/ on the path)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sirenrope.bundle import load_bundle  # noqa: E402
from sirenrope.client import RotorClient, RotorError, user_path  # noqa: E402
from sirenrope.features import featurize  # noqa: E402
from sirenrope.materialize import OutputTopicReader, WindowStore, score_cache  # noqa: E402
from sirenrope.safetensors_io import decode, f32_to_bf16  # noqa: E402

check = dt.check
TOL = 1e-5
MAX_CANDIDATES = 50
READ_TIMEOUT_MS = 1500
MAX_BODY = 64 * 1024
# Users renamed so that ids need percent-encoding: '/', spaces, '%', '+', non-ASCII.
ODD_IDS = ["team/a b", "ünï cødé/日本", "100%+plus", "q?x#y"]


class Reference:
    """The PyTorch model decoded over each user's events, in log order (the daemon's state
    after its first n events), memoized per user as the prefix grows."""

    def __init__(self, bundle, events):
        self.model, self.cfg = bundle.model, bundle.config
        self.events = {}
        for ev in events:
            self.events.setdefault(ev["user_id"], []).append(ev)
        self.caches = {}

    def cache(self, user, n):
        done, cache = self.caches.get(user, (0, None))
        if cache is None or done > n:
            done, cache = 0, self.model.new_cache(0)
        evs = self.events.get(user, [])[:n]
        if done < n:
            arrays = featurize(evs, self.cfg)
            for i in range(done, n):
                self.model.decode(cache, arrays, i)
        self.caches[user] = (n, cache)
        return cache

    def probs(self, user, n, cands, ts_ms):
        return score_cache(self.model, self.cache(user, n), cands, ts_ms)


def max_diff(a, b):
    check(len(a) == len(b), f"{len(a)} scores, want {len(b)}")
    return max((abs(x[k] - y[k]) for x, y in zip(a, b) for k in y), default=0.0)


def wait_port(proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"API listening on (\S+):(\d+)", proc.text())
        if m:
            return int(m.group(2))
        check(proc.poll() is None, f"rotor serve exited {proc.returncode}:\n{proc.text()[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no 'API listening on' line in {timeout}s:\n{proc.text()[-3000:]}")


def raw_exchange(port, data, timeout=10.0, stall=False):
    """Sends raw bytes; returns (status, headers, body, closed) of the first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        check(lines and lines[0].startswith("HTTP/1.1 "), f"not an HTTP answer: {buf[:200]!r}")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        # Closed: the server ends the connection after this answer.
        s.settimeout(3.0)
        try:
            closed = s.recv(1) == b""
        except (socket.timeout, ConnectionResetError):
            closed = headers.get("connection", "").lower() == "close"
        return status, headers, body, closed


def expect_error(call, status, code, detail=None):
    try:
        call()
    except RotorError as e:
        check((e.status, e.code) == (status, code),
              f"want {status} {code}, got {e.status} {e.code}: {e.detail}")
        if detail:
            check(re.search(detail, e.detail), f"{status} {code}: detail {e.detail!r} does not "
                                               f"match {detail!r}")
        return e
    raise AssertionError(f"want {status} {code}, got a success")


def check_errors(api, port, user, cands, ts):
    """Every error code of docs/api.md a client can cause, over the wire."""
    n = 0
    score = lambda body: api._json("POST", f"{user_path(user)}/score", body)  # noqa: E731
    expect_error(lambda: score(b"{not json"), 400, "invalid_json"); n += 1
    expect_error(lambda: score(b"[1]"), 400, "not_object"); n += 1
    expect_error(lambda: score(b'{"candidates": []}'), 400, "missing_field", r"ts_ms"); n += 1
    bad = [dict(c) for c in cands[:3]]
    bad[1] = {"item": {"id": "x", "features": [0.1, 0.2, "a", 0, 0, 0, 0, 0]},
              "attrs": bad[1]["attrs"]}
    expect_error(lambda: api.score(user, bad, ts), 400, "schema",
                 r"^candidates\[1\]\.item\.features\[2\]: expected a number"); n += 1
    bad[1] = {"item": {"id": "x", "features": [0.1, 0.2]}, "attrs": {}}
    expect_error(lambda: api.score(user, bad, ts), 400, "schema",
                 r"^candidates\[1\]\.item\.features"); n += 1
    bad[1] = {"item": {"id": "x", "features": [0.0] * 8}, "attrs": {"topic": 7}}
    expect_error(lambda: api.score(user, bad, ts), 400, "wrong_type",
                 r"^candidates\[1\]\.attrs\.topic"); n += 1
    expect_error(lambda: api.score(user, cands[:1] * (MAX_CANDIDATES + 1), ts), 400,
                 "too_many", r"candidates: %d candidates" % (MAX_CANDIDATES + 1)); n += 1
    expect_error(lambda: api.score_many({"": (cands[:1], ts)}), 400, "invalid_value",
                 r"users\[0\]\.user_id"); n += 1
    expect_error(lambda: api._json("GET", f"{user_path(user)}?foo=1"), 400, "bad_request"); n += 1
    expect_error(lambda: api._json("GET", f"{user_path(user)}/tensors?dtype=f64"), 400,
                 "bad_request", "dtype"); n += 1
    expect_error(lambda: api._json("GET", "/v1/users/a%01b"), 400, "invalid_value"); n += 1
    expect_error(lambda: api.user("no-such-user"), 404, "not_found"); n += 1
    expect_error(lambda: api.tensors("no-such-user"), 404, "not_found"); n += 1
    expect_error(lambda: api._json("GET", "/v2/nothing"), 404, "not_found"); n += 1
    expect_error(lambda: api._json("GET", "/v1/score"), 405, "method_not_allowed"); n += 1
    status, headers, body, _ = raw_exchange(port, b"GET /v1/score HTTP/1.1\r\nHost: t\r\n\r\n")
    check(status == 405 and headers.get("allow") == "POST",
          f"GET /v1/score: {status}, Allow {headers.get('allow')!r}: {body[:200]!r}")
    # 413: refused from its Content-Length, before the body is read; the connection closes.
    status, _, body, closed = raw_exchange(
        port, b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n{" % (MAX_BODY + 1))
    check(status == 413 and json.loads(body)["error"] == "body_too_large" and closed,
          f"an oversized body: {status} {body[:200]!r}, closed {closed}")
    # 408: a request that stalls after its first bytes, answered once api.read_timeout_ms is up.
    began = time.monotonic()
    status, _, body, closed = raw_exchange(
        port, b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"ts_ms\"")
    took = time.monotonic() - began
    check(status == 408 and json.loads(body)["error"] == "request_timeout" and closed,
          f"a stalled client: {status} {body[:200]!r}, closed {closed}")
    check(READ_TIMEOUT_MS / 1000 * 0.8 <= took <= READ_TIMEOUT_MS / 1000 + 5,
          f"408 after {took:.2f}s, api.read_timeout_ms is {READ_TIMEOUT_MS}")
    status, _, body, closed = raw_exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"x" * 20000 + b"\r\n\r\n")
    check(status == 431 and json.loads(body)["error"] == "headers_too_large",
          f"oversized headers: {status} {body[:200]!r}")
    # The daemon still serves after all that.
    check(api.health() == {"status": "ok"}, "unhealthy after the error battery")
    return n


def parse_prometheus(text):
    """{(name, frozenset(labels)): value}; fails on a line that is not the text format."""
    series = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            check(not line or re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line),
                  f"/metrics: bad comment line {line!r}")
            continue
        m = line_re.match(line)
        check(m, f"/metrics: bad sample line {line!r}")
        labels = frozenset(label_re.findall(m.group(3) or ""))
        value = float(m.group(4).replace("+Inf", "inf").replace("-Inf", "-inf"))
        series[(m.group(1), labels)] = value
    return series


def rename_users(path, work):
    """The synthetic events with a few users renamed to ids that need percent-encoding."""
    lines = path.read_text().splitlines()
    users = sorted({json.loads(line)["user_id"] for line in lines})
    mapping = dict(zip(users[:len(ODD_IDS)], ODD_IDS))
    out = []
    for line in lines:
        ev = json.loads(line)
        ev["user_id"] = mapping.get(ev["user_id"], ev["user_id"])
        out.append(ev)
    renamed = work / "events.jsonl"
    renamed.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in out))
    return renamed, out


def run(case, mode):
    rate = 250
    path, events = rename_users(dt.synth(case.work, 3000, 40, 21), case.work)
    bundle = load_bundle(dt.BUNDLE)
    model_id = hashlib.sha256(dt.BUNDLE.read_bytes()).hexdigest()
    W = bundle.config.window
    api_extra = f"""  enabled: true
  read_timeout_ms: {READ_TIMEOUT_MS}
  max_body_bytes: {MAX_BODY}
  max_candidates: {MAX_CANDIDATES}
"""
    config = case.config("a", mode=mode, batch=32, snapshot_interval_ms=150, api_extra=api_extra,
                         commit_interval_ms=50)
    case.create_topics(config, 4)
    daemon = case.serve(config)
    port = wait_port(daemon)
    api = RotorClient(f"http://127.0.0.1:{port}", timeout=10)

    # ---- start: healthy at once; not ready (and the data endpoints refusing) until assigned.
    check(api.health() == {"status": "ok"}, "/healthz")
    saw_503 = refused_data = False
    deadline = time.monotonic() + 90
    while True:
        r = api.readiness()
        if r.get("ready"):
            break
        check(r.get("error") == "not_ready" and r.get("detail"),
              f"/readyz 503 without a reason: {r}")
        saw_503 = True
        try:
            api.user("whoever")
        except RotorError as e:
            if e.status == 503:
                check(e.code == "not_ready", f"503 {e.code}: {e.detail}")
                refused_data = True
        check(time.monotonic() < deadline, f"/readyz still 503 after 90 s: {r}")
        check(daemon.poll() is None, f"rotor serve exited:\n{daemon.text()[-3000:]}")
        time.sleep(0.02)
    check(api.ready(), "/readyz went back to 503")
    parts = api.readiness()["partitions"]
    check(sorted(p["partition"] for p in parts) == [0, 1, 2, 3] and
          all(p["state"] == "consuming" for p in parts), f"/readyz partitions: {parts}")

    # ---- streaming: queries and scores while events arrive at the rate.
    ref = Reference(bundle, events)
    users = sorted(ref.events)
    cand_events = [e for e in events if e["user_id"] == users[-1]][:8]
    cands = [{"item": e["item"], "attrs": e["attrs"]} for e in cand_events]
    cand_lines = [json.dumps(e) for e in cand_events]  # Whole events, sent as they are.
    feeder = dt.Feeder(case, config, path, rate, chunk=250)
    checked = {"score": 0, "user": 0, "tensors": 0, "warm": 0}
    began = time.monotonic()
    i = 0
    while time.monotonic() - began < 6:
        user = users[i % len(users)]
        i += 1
        ts = ref.events[user][-1]["ts_ms"] + 3_600_000
        got = api.score(user, cands if i % 2 else cand_lines, ts)
        check(got.user_id == user and got.model_id == model_id, f"score of {user}: {got.user_id}")
        want = ref.probs(user, got.next_pos, cands, ts)
        d = max_diff(got, want)
        check(d <= TOL, f"{user} at next_pos {got.next_pos}: /score differs from the "
                        f"PyTorch reference by {d:.3g}")
        checked["score"] += 1
        checked["warm"] += got.known
        try:
            meta = api.user(user)
        except RotorError as e:
            check(e.code == "not_found", f"GET user {user}: {e}")
            continue
        n = meta["next_pos"]
        evs = ref.events[user]
        check(1 <= n <= len(evs) and meta["rows"] == min(n, W) and
              meta["last_event_ts_ms"] == evs[n - 1]["ts_ms"] and meta["window"] == W and
              meta["model_id"] == model_id and meta["user_id"] == user,
              f"GET user {user} while streaming: {meta}")
        checked["user"] += 1
        if i % 3 == 0:
            t = api.tensors(user)
            cache = ref.cache(user, t.next_pos)
            check(torch.equal(t["pos"], cache.pos), f"{user}: tensors' positions")
            for b in range(bundle.config.n_blocks):
                dk = (t[f"k.{b}"] - cache.k[b]).abs().max().item() if cache.rows else 0
                dv = (t[f"v.{b}"] - cache.v[b]).abs().max().item() if cache.rows else 0
                check(max(dk, dv) <= TOL, f"{user}: tensors' block {b} differ from the "
                                          f"reference window by {max(dk, dv):.3g}")
            checked["tensors"] += 1
    feeder.flowing("the streaming queries ended")
    errors = check_errors(api, port, users[0], cands, ref.events[users[0]][-1]["ts_ms"])
    cold = api.score("nobody-at-all", cands, 1767571200000)
    check(not cold.known and cold.next_pos == 0, f"an unknown user: {cold.known}")
    check(max_diff(cold, score_cache(bundle.model, bundle.model.new_cache(0), cands,
                                     1767571200000)) <= TOL, "a cold start's scores")
    feeder.finish()
    check(checked["warm"] > 0, f"no score came from a cached window while streaming: {checked}")

    # ---- at rest: one last event for a few users once their snapshot clocks are due, so the
    # state the API holds is one a snapshot was published for.
    def settled(counts):
        def done():
            for u, n in counts.items():
                try:
                    if api.user(u)["next_pos"] != n:
                        return False
                except RotorError:
                    return False
            return True
        dt.wait_for(done, 120, "every event applied")

    settled({u: len(evs) for u, evs in ref.events.items()})

    def input_positions():
        where, last_of = {}, {}  # user -> partition; partition -> (offset, user) of its last
        for m in case.consume(config, case.topics["input"]):
            where[m["key"]] = m["partition"]
            if m["partition"] not in last_of or m["offset"] > last_of[m["partition"]][0]:
                last_of[m["partition"]] = (m["offset"], m["key"])
        return where, last_of

    where, _ = input_positions()
    check(set(where) == set(users), f"input keys {sorted(set(where) ^ set(users))[:5]}")
    tail_users = {}  # One user per partition, the odd ids first.
    for u in ODD_IDS + users:
        tail_users.setdefault(where[u], u)
    tail_users = sorted(tail_users.values())
    time.sleep(0.5)  # > output.snapshot_interval_ms: every user's snapshot is due again.
    tail = []
    for j, u in enumerate(tail_users):
        ev = dict(ref.events[u][-1])
        ev.update(event_id=f"tail-{j}", ts_ms=ev["ts_ms"] + 60_000)
        tail.append(ev)
        ref.events[u].append(ev)
    tail_path = case.work / "tail.jsonl"
    tail_path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in tail))
    case.produce(config, tail_path)
    settled({u: len(ref.events[u]) for u in tail_users})
    where, last_of = input_positions()

    # Metadata of every user: what was produced.
    for u in users:
        meta = api.user(u)
        evs = ref.events[u]
        part = where[u]
        inp = meta["input"]
        check(meta["next_pos"] == len(evs) and meta["rows"] == min(len(evs), W) and
              meta["first_pos"] == len(evs) - min(len(evs), W) and
              meta["last_event_ts_ms"] == evs[-1]["ts_ms"] and meta["window"] == W and
              inp["topic"] == case.topics["input"] and inp["partition"] == part and
              inp["next_offset"] == last_of[part][0] + 1,
              f"GET user {u} at rest: {meta}; produced {len(evs)} events, last ts "
              f"{evs[-1]['ts_ms']}, partition {part} ending at {last_of[part][0]}")

    # Tensors byte-identical to the published snapshot of the same state.
    outputs = case.consume(config, case.topics["output"])
    latest = {}
    for m in outputs:
        raw = base64.b64decode(m["value_b64"])
        _, meta = decode(raw)
        if meta["rotor.kind"] == "snapshot":
            latest[meta["rotor.user_id"]] = raw
    identical = 0
    for part, (off, u) in last_of.items():
        if u not in tail_users:
            continue
        got = api.tensors_bytes(u)
        check(u in latest, f"no snapshot published for {u}'s last event")
        _, smeta = decode(latest[u])
        check(int(smeta["rotor.source_offset"]) == off and
              int(smeta["rotor.next_pos"]) == len(ref.events[u]),
              f"{u}'s latest snapshot is not of its last event: {smeta}")
        check(got == latest[u], f"GET tensors of {u} differs from its snapshot message:\n"
                                f"api  {decode(got)[1]}\nsnap {smeta}")
        identical += 1
    check(identical == 4, f"only {identical} of 4 partitions end with a tail user's event: "
                          f"{last_of}, tail {tail_users}")
    for u in tail_users:
        f32 = api.tensors(u)
        for dtype in ("bf16", "f16"):
            t = api.tensors(u, dtype)
            check(t.metadata["rotor.dtype"] == dtype.upper(), f"{dtype}: {t.metadata}")
            for name, x in f32.items():
                if name == "pos":
                    check(torch.equal(t[name], x), f"{dtype} pos")
                    continue
                want = (torch.from_numpy(f32_to_bf16(x.numpy()).view(np.int16)).view(
                    torch.bfloat16) if dtype == "bf16" else x.to(torch.float16))
                check(torch.equal(t[name], want), f"{u} {dtype} {name}: not the f32 rounded")

    # Scores at rest: every user against the reference; /v1/score equals the single calls.
    ts = max(e["ts_ms"] for e in events) + 86_400_000
    singles = {}
    for u in users:
        singles[u] = api.score(u, cands, ts)
        d = max_diff(singles[u], ref.probs(u, len(ref.events[u]), cands, ts))
        check(singles[u].known and d <= TOL, f"{u} at rest: /score vs reference {d:.3g}")
    many = api.score_many({u: (cands, ts) for u in users[:30]})
    for u in users[:30]:
        check(many[u] == singles[u], f"POST /v1/score of {u} differs from its single call")

    # The materializer: the output topic under read_committed, windows equal to the API's.
    store = WindowStore.from_bundle(bundle)
    reader = OutputTopicReader(store, case.bootstrap, case.topics["output"])
    try:
        reader.run_until(timeout_s=120)
    finally:
        reader.close()
    check(not store.needs_snapshot(), f"gaps in the materialized windows: "
                                      f"{store.needs_snapshot()[:5]}")
    check(set(store.users) == set(users), "materialized users differ from the produced ones")
    worst = 0.0
    for u in users:
        t = api.tensors(u)
        w = store.get(u)
        check(w.next_pos == t.next_pos and w.last_ts_ms == int(t.metadata["rotor.last_ts_ms"]),
              f"{u}: materialized at {w.next_pos}, the API at {t.next_pos}")
        for b in range(bundle.config.n_blocks):
            check(np.array_equal(w.k[b], t[f"k.{b}"].numpy()) and
                  np.array_equal(w.v[b], t[f"v.{b}"].numpy()),
                  f"{u}: materialized block {b} differs from the API's window")
        d = max_diff(store.score(u, cands, ts), singles[u])
        worst = max(worst, d)
        check(d <= TOL, f"{u}: materialized scores differ from /score by {d:.3g}")
    if mode == "exactly_once":
        counts = store.stats.counts
        check(counts["duplicate"] == 0 and counts["gap"] == 0 and counts["restarted"] == 0,
              f"exactly-once, read_committed: {counts}")

    # Metrics: Prometheus text, counting what was asked.
    series = parse_prometheus(api.metrics())
    total = lambda route, status: sum(  # noqa: E731
        v for (name, labels), v in series.items() if name == "rotor_api_requests_total"
        and ("route", route) in labels and ("status", status) in labels)
    check(total("users", "200") >= checked["user"] + len(users),
          f"rotor_api_requests_total users 200 = {total('users', '200')}")
    check(total("user_score", "400") >= 5, "rotor_api_requests_total user_score 400")
    check(total("unmatched", "404") >= 1, "rotor_api_requests_total unmatched 404")
    # Users the pipeline holds hot are read from its committed view, not RocksDB; the checks
    # above (scores vs the reference, tensors vs the snapshots) ran on both paths.
    reads = {labels: v for (name, labels), v in series.items()
             if name == "rotor_api_state_reads_total"}
    hot = sum(v for labels, v in reads.items() if ("source", "hot") in labels)
    stored = sum(v for labels, v in reads.items() if ("source", "store") in labels)
    check(hot > 0, f"no read came from the committed view (hot {hot}, store {stored})")

    daemon.send_signal(signal.SIGTERM)
    case.wait(daemon)
    print(f"api ({mode}): /readyz 503 before assignment: {saw_503} (data endpoints refused: "
          f"{refused_data}); while streaming {checked['score']} scores ({checked['warm']} warm), "
          f"{checked['user']} metadata, {checked['tensors']} tensors equal to the reference; "
          f"{errors} error answers and 405/408/413/431 over raw sockets; {identical} tensors "
          f"byte-identical to snapshots; {len(users)} users' metadata, scores (vs reference) "
          f"and materialized windows exact, materialized scores within {worst:.2g} of /score; "
          f"materializer {store.stats.counts}; state reads {hot:.0f} hot, {stored:.0f} from "
          f"RocksDB")
    check(saw_503 and refused_data, "never saw /readyz 503 and a data endpoint refused before "
                                    "the partitions were assigned")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotor", required=True, help="the rotor binary")
    parser.add_argument("--name", default="ctest", help="the broker.sh broker to use")
    parser.add_argument("--mode", default="exactly_once",
                        choices=["exactly_once", "at_least_once"])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bootstrap = dt.broker.bootstrap_of(args.name)
    work = Path(tempfile.mkdtemp(prefix="rotor-it-api-"))
    case = dt.Case(os.path.abspath(args.rotor), bootstrap, "api", work)
    began = time.monotonic()
    ok = False
    try:
        run(case, args.mode)
        ok = True
    except AssertionError as e:
        print(f"FAIL (api, {args.mode}): {e}\nwork directory: {work}", file=sys.stderr)
        for log in case.logs[-2:]:
            print(f"---- {log} (tail)\n{log.read_text()[-2500:]}", file=sys.stderr)
        return 1
    finally:
        case.cleanup()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"PASS api ({args.mode}) in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
