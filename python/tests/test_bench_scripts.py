"""The benchmark scripts of bench/ compile, and api_load.py's pure parts do what they say.

The benchmarks themselves need a release build, a real broker and minutes (they are not tests,
docs/performance.md); this keeps them from rotting between runs: every bench/*.py is compiled,
and the pieces of bench/api_load.py that turn data into figures are checked on small inputs.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import py_compile
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "bench")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(BENCH, "*.py"))),
                         ids=os.path.basename)
def test_bench_script_compiles(path, tmp_path):
    py_compile.compile(path, cfile=str(tmp_path / "out.pyc"), doraise=True)


def _import_bench(name):
    """bench/<name>.py imported with bench/ on sys.path for the module's tests."""
    sys.path.insert(0, BENCH)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(BENCH)


@pytest.fixture(scope="module")
def api_load():
    yield from _import_bench("api_load")


def test_window_stats_counts_only_the_window(api_load):
    # (input CreateTime ms, latency ms or None): 100 events in [1000, 2000), one unmatched.
    events = [(900, 500)] + [(1000 + 10 * i, 5 + i) for i in range(99)] + [(1995, None),
                                                                           (2000, 1)]
    s = api_load.window_stats(events, 1000, 2000)
    assert s["window_events"] == 100
    assert s["window_unmatched"] == 1
    assert s["p50_ms"] == 5 + 49
    assert s["p99_ms"] == 5 + 98
    # 100 events from 1000 ms until the last delta (1980 + 103 ms): 2083 - 1000 ms.
    assert s["events_per_s"] == pytest.approx(100 / 1.083)


def test_parse_wrk_reads_the_done_line(api_load):
    line = {"requests": 10, "duration_us": 1000000, "latency_us": {"p99": 1200}}
    assert api_load.parse_wrk("Running 1s test\nWRK_JSON " + json.dumps(line) + "\n") == line
    with pytest.raises(SystemExit):
        api_load.parse_wrk("Running 1s test\nno figures\n")


def test_requests_file_picks_first_users_and_distinct_items(api_load, tmp_path):
    events = tmp_path / "events.jsonl"
    with open(events, "w") as f:
        for i in range(40):
            f.write(json.dumps({"user_id": f"u/{i % 5}", "ts_ms": 1000 + i,
                                "item": {"id": f"i{i % 30}", "features": [i]},
                                "attrs": {"topic": "t"}}) + "\n")
    out = tmp_path / "requests.tsv"
    users, ts_ms = api_load.requests_file(str(events), str(out), users=3, candidate_sets=2,
                                          candidates=4)
    assert users == ["u/0", "u/1", "u/2"]
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    path, body = lines[0].split("\t")
    assert path == "/v1/users/u%2F0/score"
    body = json.loads(body)
    assert len(body["candidates"]) == 4
    # The items come after the users' lines (from event 3 on), distinct, 8 in all.
    assert ts_ms == body["ts_ms"] == 1000 + 10 + 1000
    all_items = [c["item"]["id"] for line in lines[:2]
                 for c in json.loads(line.split("\t")[1])["candidates"]]
    assert sorted(all_items) == sorted(f"i{i}" for i in range(3, 11))
    with pytest.raises(SystemExit):
        api_load.requests_file(str(events), str(out), users=6)


def test_server_side_reads_the_histogram_deltas(api_load):
    before = {0.001: 10.0, 0.005: 10.0, float("inf"): 10.0, "sum": 0.005, "count": 10.0}
    # 100 more requests: 60 within 1 ms, 39 more within 5 ms, 1 over; 0.2 s in all.
    after = {0.001: 70.0, 0.005: 109.0, float("inf"): 110.0, "sum": 0.205, "count": 110.0}
    s = api_load.server_side(before, after)
    assert s["requests"] == 100
    assert s["mean_ms"] == pytest.approx(2.0)
    assert s["p50_bucket_ms"] == 1.0
    assert s["p99_bucket_ms"] == 5.0
    assert s["state_reads_hot"] == 0 and s["state_reads_store"] == 0  # Not in these scrapes.
    # Where the state was read: the committed view or RocksDB, as deltas too.
    before.update(reads_hot=5.0, reads_store=2.0)
    after.update(reads_hot=95.0, reads_store=12.0)
    s = api_load.server_side(before, after)
    assert (s["state_reads_hot"], s["state_reads_store"]) == (90, 10)
    assert api_load.server_side(after, after) == {"requests": 0}


@pytest.fixture(scope="module")
def loadlib():
    yield from _import_bench("loadlib")


@pytest.fixture(scope="module")
def load():
    yield from _import_bench("load")


def test_load_settings_land_under_their_section_replacing_the_key(loadlib):
    text = "state:\n  dir: /s\n  wal: true\nlog:\n  level: info\n"
    out = loadlib.apply_settings(text, {"state.wal": "false", "pipeline.workers": "1",
                                        "log.level": "debug"})
    lines = out.splitlines()
    assert lines.count("  wal: false") == 1 and "  wal: true" not in lines
    assert lines.index("  wal: false") == lines.index("state:") + 1
    assert lines[lines.index("pipeline:") + 1] == "  workers: 1"
    assert lines[lines.index("log:") + 1] == "  level: debug" and "  level: info" not in lines
    assert out.endswith("\n")


def test_load_reads_the_loop_line_of_the_daemon_log(load):
    # A line of `rotor serve`'s exit log (pipeline/daemon.cc, Daemon::Impl::LogStats) as a
    # 500k-event drain printed it; load.py puts its figures in every drain's result.
    line = ("[2026-12-05 20:10:01.123] [info] loop: 351 batches of 1425 records on average; its "
            "thread spent 0.30 s filling batches, 7.39 s processing them (2.00 s reading records, "
            "4.53 s decoding on 2 worker(s), 0.87 s batching state and messages), 1.33 s "
            "dispatching, 0.00 s waiting for deliveries and commits, 3.51 s idle\n")
    got = load.loop_seconds("other lines\n" + line)
    assert got == {"batches": 351.0, "records_per_batch": 1425.0, "fill_s": 0.30,
                   "process_s": 7.39, "read_s": 2.00, "decode_s": 4.53, "batch_s": 0.87,
                   "dispatch_s": 1.33, "wait_s": 0.00, "idle_s": 3.51}
    assert load.loop_seconds("no such line") == {}


def test_settle_waits_for_quiet_seconds_and_gives_up_at_its_limit(loadlib):
    busy, total = loadlib.cpu_times()
    assert 0 <= busy <= total
    # Anything counts as quiet: two quiet seconds, then it returns.
    assert 2.0 <= loadlib.settle(quiet_s=2, busy_share=1.0, max_s=30) < 10.0
    # Nothing counts as quiet (busy_share < 0): it gives up at max_s.
    assert 2.0 <= loadlib.settle(quiet_s=1, busy_share=-1.0, max_s=2) < 10.0
