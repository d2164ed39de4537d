"""The HTTP API under load: scoring requests against a daemon that consumes at a fixed rate.

One run, two phases, each on fresh 8-partition topics of one real broker on loopback
(tools/kafka/broker.sh at nice 0, as bench/load.py) with `rotor serve` (release build, API on
a free loopback port, defaults otherwise) fed by `rotor produce --rate R` (default 10,000
events/s from data/synth-1000000-seed1-u10000.jsonl):

  A  pipeline only: the API is up and idle;
  B  the same input, and from --warmup seconds in, wrk sending POST /v1/users/{id}/score with
     100 candidates per request at --api-rate requests/s (bench/api_load.lua paces wrk;
     requests rotate over 256 users whose events come first in the input, so they have state,
     with candidates taken from the synthetic data's items and attributes).

Both phases are measured over the same window (wrk's seconds in B, the same offsets from the
first input event in A): the pipeline's events/s (window events over first input to their last
delta) and event-to-publish p50/p99/p999 (bench/loadlib.event_latencies), rotor's CPU, and in B
the API's achieved requests/s and p50/p99/p99.9 latency (wrk, from the request's first byte
written to the response's last byte read). Then the targets of issue 11, from ratios within
the run: API p99 <= 10 ms at --api-rate 1000, pipeline events/s with the API >= 90% of without.
The table goes to stdout, everything to build/bench-results/api_load.json.

    /usr/bin/python3 bench/api_load.py                 # under 2 minutes
    /usr/bin/python3 bench/api_load.py --seconds 60    # longer phases
    /usr/bin/python3 bench/api_load.py --smoke         # ~45 s, low rates: checks it works

Loopback only. Needs wrk (tools/setup.sh) and Maven's Kafka jars (tools/kafka/fetch.sh). A
benchmark, not a test: not part of tools/test.sh; exit 1 only when a run breaks (rotor exits
non-zero, an event without its delta, wrk errors or non-200 answers), not on a missed target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

from loadlib import (DEFAULT_EVENTS, RESULTS, ROOT, ROTOR, Broker, Samplers, build_rotor,
                     ensure_events, event_latencies, load_average, log, make_bundle, percentile,
                     rotor, start_serve, write_config)

LUA = os.path.join(ROOT, "bench", "api_load.lua")
TARGET_API_P99_MS = 10.0
TARGET_API_RATE = 1000
TARGET_PIPELINE_RATIO = 0.90


def requests_file(events_file, path, users=256, candidate_sets=8, candidates=100):
    """Writes wrk's requests ("<path>\\t<body>" lines); returns (users, request ts_ms).

    Users: the first `users` distinct users of the input (their events come first, so they
    have state once the warm-up has been consumed). Candidates: `candidate_sets` sets of
    `candidates` distinct items (item and attrs as the events carry them) from the events
    after those; user i gets set i % candidate_sets. Every request is scored at one request
    time, just after the last event read here.
    """
    chosen, seen, items, item_ids, ts_ms = [], set(), [], set(), 0
    want_items = candidate_sets * candidates
    with open(events_file) as f:
        for line in f:
            event = json.loads(line)
            ts_ms = max(ts_ms, event["ts_ms"])
            if len(chosen) < users:
                if event["user_id"] not in seen:
                    seen.add(event["user_id"])
                    chosen.append(event["user_id"])
            elif event["item"]["id"] not in item_ids:
                item_ids.add(event["item"]["id"])
                items.append({"item": event["item"], "attrs": event.get("attrs", {})})
                if len(items) == want_items:
                    break
    if len(chosen) < users or len(items) < want_items:
        sys.exit(f"{events_file}: fewer than {users} users or {want_items} distinct items")
    request_ts = ts_ms + 1000
    bodies = [json.dumps({"ts_ms": request_ts, "candidates": items[i::candidate_sets]})
              for i in range(candidate_sets)]
    with open(path, "w") as f:
        for i, user in enumerate(chosen):
            quoted = urllib.parse.quote(user, safe="")
            f.write(f"/v1/users/{quoted}/score\t{bodies[i % candidate_sets]}\n")
    return chosen, request_ts


def wait_ready(port, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"rotor's /readyz on port {port} not 200 within {timeout_s} s")
        time.sleep(0.2)


def check_score(port, requests_path):
    """One request of wrk's set by hand: 200, known user, 100 scores (or the run stops)."""
    path, body = open(requests_path).readline().rstrip("\n").split("\t", 1)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        answer = json.loads(r.read())
    n = len(json.loads(body)["candidates"])
    if len(answer.get("scores", [])) != n:
        sys.exit(f"POST {path}: expected {n} scores, got {json.dumps(answer)[:500]}")
    return answer.get("known")


def score_histogram(port):
    """rotor_api_request_seconds of route user_score, status 200, from /metrics: {le: count}
    with "sum" and "count", and rotor_api_state_reads_total as "reads_hot", "reads_store"."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    series = 'rotor_api_request_seconds_{}{{route="user_score",status="200"{}}} (\\S+)'
    for m in re.finditer(series.format("bucket", ',le="([^"]+)"'), text):
        out[float(m.group(1))] = float(m.group(2))
    for name in ("sum", "count"):
        m = re.search(series.format(name, ""), text)
        out[name] = float(m.group(1)) if m else 0.0
    # Where the API read users' state: the committed view ("hot") or RocksDB ("store").
    for source in ("hot", "store"):
        m = re.search(f'rotor_api_state_reads_total{{source="{source}"}} (\\S+)', text)
        out[f"reads_{source}"] = float(m.group(1)) if m else 0.0
    return out


def server_side(before, after):
    """The server's own time for the requests between two score_histogram()s: mean, and the
    bucket bounds p50 and p99 fall in (from the request's last byte read to the response's
    last byte written; wrk's latency adds the client, the kernel and waiting for a thread)."""
    count = after.get("count", 0) - before.get("count", 0)
    if count <= 0:
        return {"requests": 0}
    buckets = sorted((le, after[le] - before.get(le, 0)) for le in after
                     if isinstance(le, float))
    def bound(q):
        return next((le * 1000 for le, n in buckets if n >= q * count), float("inf"))
    return {"requests": int(count),
            "state_reads_hot": int(after.get("reads_hot", 0) - before.get("reads_hot", 0)),
            "state_reads_store": int(after.get("reads_store", 0) - before.get("reads_store", 0)),
            "mean_ms": (after["sum"] - before.get("sum", 0)) / count * 1000,
            "p50_bucket_ms": bound(0.5), "p99_bucket_ms": bound(0.99),
            "busy_threads": (after["sum"] - before.get("sum", 0))}


def parse_wrk(output):
    m = re.search(r"^WRK_JSON (\{.*\})$", output, re.M)
    if not m:
        sys.exit(f"wrk printed no WRK_JSON line:\n{output[-3000:]}")
    return json.loads(m.group(1))


def window_stats(events, start_ms, end_ms):
    """Pipeline figures over the events whose input CreateTime is in [start_ms, end_ms)."""
    inside = [(t, lat) for t, lat in events if start_ms <= t < end_ms]
    lat = sorted(x for _, x in inside if x is not None)
    done_ms = max((t + x for t, x in inside if x is not None), default=start_ms)
    return {
        "window_events": len(inside),
        "window_unmatched": sum(1 for _, x in inside if x is None),
        "events_per_s": len(inside) / max(1e-3, (done_ms - start_ms) / 1000.0),
        "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
        "p999_ms": percentile(lat, 0.999),
    }


def run_phase(phase, broker, bundle, args, requests_path, work):
    tag = f"apiload-{phase}-{uuid.uuid4().hex[:6]}"
    config = write_config(os.path.join(work, f"{tag}.yaml"), tag, broker.bootstrap, bundle,
                          os.path.join(work, tag), api_listen="127.0.0.1:0",
                          api_threads=args.api_threads)
    rotor("topics", "--config", config, "--partitions", "8")
    serve_log = os.path.join(work, f"{tag}.log")
    serve, port = start_serve(config, serve_log, exit_when_idle_ms=args.idle_ms)
    if port is None:
        serve.kill()
        sys.exit(f"rotor serve logged no API port:\n{open(serve_log).read()[-3000:]}")
    wait_ready(port)
    samplers = Samplers(rotor=serve.pid, broker=broker.pid).start()
    limit = int(args.rate * args.seconds)
    load_before = load_average()
    produce = subprocess.Popen([ROTOR, "produce", "--config", config, "--file", args.events,
                                "--rate", str(args.rate), "--limit", str(limit)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    produce_start = time.monotonic()
    time.sleep(min(args.warmup, args.seconds))
    wrk = None
    known = None
    if phase == "B":  # Outside the window: one request by hand, checked.
        known = check_score(port, requests_path)
    window_mono = (time.monotonic(), time.monotonic() + args.api_seconds)
    window_wall_ms = time.time() * 1000
    if phase == "B":
        wrk_proc = subprocess.Popen(
            ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d",
             f"{args.api_seconds}s", "--timeout", "2s", "--latency", "-s", LUA,
             f"http://127.0.0.1:{port}", "--", requests_path, str(args.api_rate),
             str(args.wrk_threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wrk_samplers = Samplers(wrk=wrk_proc.pid).start()
        hist_before = score_histogram(port)
        wrk_out, wrk_err = wrk_proc.communicate()
        wrk_samplers.stop()
        server = server_side(hist_before, score_histogram(port))
        if wrk_proc.returncode != 0:
            sys.exit(f"wrk failed:\n{wrk_out}{wrk_err}")
        wrk = wrk_out
        log("wrk:\n" + wrk.strip())
        log(f"the first request by hand: known user = {known}")
    else:
        time.sleep(max(0.0, window_mono[1] - time.monotonic()))
    out, err = produce.communicate()
    if produce.returncode != 0:
        sys.exit(f"rotor produce failed:\n{out}{err}")
    load_after = load_average()
    serve.wait(timeout=600)
    samplers.stop()
    if serve.returncode != 0:
        sys.exit(f"rotor serve exited {serve.returncode}:\n{open(serve_log).read()[-3000:]}")
    produce_s = time.monotonic() - produce_start
    if phase == "warm-up":
        return None

    matched = event_latencies(config, tag, idle_ms=args.read_idle_ms)
    events = matched["events"]
    first_in = min(t for t, _ in events)
    # B: wrk's seconds; A: the same seconds after the warm-up, without requests.
    start_ms = window_wall_ms
    result = {
        "phase": phase, "offered_per_s": args.rate,
        "achieved_input_per_s": float(out.split("(")[1].split("/s")[0]),
        "events": len(events), "unmatched": sum(1 for _, x in events if x is None),
        "deltas": matched["deltas"],
        "window_start_after_first_input_s": (start_ms - first_in) / 1000.0,
        "window_s": args.api_seconds,
        **window_stats(events, start_ms, start_ms + args.api_seconds * 1000),
        "rotor_cpu_cores": samplers.cores("rotor", *window_mono),
        "broker_cpu_cores": samplers.cores("broker", *window_mono),
        "rotor_peak_rss_mib": samplers.peak_rss_mib("rotor"),
        "produce_wall_s": produce_s,
        "load_average_before": load_before, "load_average_after": load_after,
    }
    if wrk is not None:
        w = parse_wrk(wrk)
        result["api"] = {
            "target_per_s": args.api_rate, "connections": args.connections,
            "requests": w["requests"],
            "requests_per_s": w["requests"] / max(1e-9, w["duration_us"] / 1e6),
            "p50_ms": w["latency_us"]["p50"] / 1000, "p90_ms": w["latency_us"]["p90"] / 1000,
            "p99_ms": w["latency_us"]["p99"] / 1000, "p999_ms": w["latency_us"]["p999"] / 1000,
            "max_ms": w["latency_us"]["max"] / 1000,
            "errors": w["errors"], "non200": w["non200"], "unknown_users": w["unknown_users"],
            "schedule_resets": w["schedule_resets"],
            "candidates_per_request": args.candidates,
            "wrk_cpu_cores": wrk_samplers.cores("wrk"),
            "server": server,
        }
        if server.get("requests"):
            # Seconds of server time over the window: how many API threads were busy.
            server["busy_threads"] /= args.api_seconds
    return result


def verdicts(a, b, args):
    ratio = b["events_per_s"] / a["events_per_s"] if a["events_per_s"] else float("nan")
    api = b["api"]
    rate_ok = api["requests_per_s"] >= 0.95 * TARGET_API_RATE
    p99_ok = api["p99_ms"] <= TARGET_API_P99_MS
    lines = []
    if args.api_rate < TARGET_API_RATE or args.candidates != 100:
        lines.append(f"API target not tested: it is at {TARGET_API_RATE} requests/s of 100 "
                     f"candidates, this run asked {args.api_rate}/s of {args.candidates}")
        api_verdict = "not tested"
    else:
        api_verdict = "met" if rate_ok and p99_ok else "MISSED"
        why = []
        if not rate_ok:
            why.append(f"achieved {api['requests_per_s']:.0f} requests/s, below 95% of "
                       f"{TARGET_API_RATE}")
        if not p99_ok:
            why.append(f"p99 {api['p99_ms']:.2f} ms > {TARGET_API_P99_MS:g} ms")
        lines.append(f"API p99 <= {TARGET_API_P99_MS:g} ms at {TARGET_API_RATE} requests/s: "
                     f"{api_verdict} (p99 {api['p99_ms']:.2f} ms at "
                     f"{api['requests_per_s']:.0f} requests/s{'; ' + '; '.join(why) if why else ''})")
    pipe_verdict = "met" if ratio >= TARGET_PIPELINE_RATIO else "MISSED"
    if min(a["events_per_s"], b["events_per_s"]) >= 0.95 * args.rate:
        note = (f"both kept up with the offered {args.rate}/s: this ratio says the pipeline "
                f"still keeps up, not how much headroom is left; compare the p99s")
    else:
        note = (f"the offered {args.rate}/s was not kept up with: the backlog grew, and the "
                f"window's events/s includes draining the warm-up's backlog, so both figures "
                f"are below capacity; their ratio still compares the phases")
    lines.append(f"pipeline with API >= {TARGET_PIPELINE_RATIO:.0%} of without: {pipe_verdict} "
                 f"({b['events_per_s']:.0f} / {a['events_per_s']:.0f} events/s = {ratio:.3f}; "
                 f"{note})")
    return {"api": api_verdict, "pipeline": pipe_verdict, "pipeline_ratio": ratio,
            "pipeline_p99_ratio": b["p99_ms"] / a["p99_ms"] if a["p99_ms"] else float("nan"),
            "rotor_cpu_delta_cores": b["rotor_cpu_cores"] - a["rotor_cpu_cores"],
            "lines": lines}


def print_table(a, b, v):
    api = b["api"]
    rows = [
        ("pipeline events/s (window)", f"{a['events_per_s']:.0f}", f"{b['events_per_s']:.0f}",
         f"{v['pipeline_ratio']:.3f}"),
        ("pipeline event-to-publish p50 ms", f"{a['p50_ms']:.0f}", f"{b['p50_ms']:.0f}", ""),
        ("pipeline event-to-publish p99 ms", f"{a['p99_ms']:.0f}", f"{b['p99_ms']:.0f}",
         f"{v['pipeline_p99_ratio']:.2f}"),
        ("pipeline event-to-publish p999 ms", f"{a['p999_ms']:.0f}", f"{b['p999_ms']:.0f}", ""),
        ("rotor CPU cores (window)", f"{a['rotor_cpu_cores']:.2f}",
         f"{b['rotor_cpu_cores']:.2f}", f"{v['rotor_cpu_delta_cores']:+.2f}"),
        ("broker CPU cores (window)", f"{a['broker_cpu_cores']:.2f}",
         f"{b['broker_cpu_cores']:.2f}", ""),
        ("wrk CPU cores (window)", "-", f"{api['wrk_cpu_cores']:.2f}", ""),
        ("unmatched events", str(a["unmatched"]), str(b["unmatched"]), ""),
        ("API requests/s (target)", "-",
         f"{api['requests_per_s']:.0f} ({api['target_per_s']})", ""),
        ("API latency p50 / p99 / p99.9 ms", "-",
         f"{api['p50_ms']:.2f} / {api['p99_ms']:.2f} / {api['p999_ms']:.2f}", ""),
        ("API server time mean ms; p50, p99 within (histogram bucket) ms", "-",
         f"{api['server'].get('mean_ms', float('nan')):.2f}; <= "
         f"{api['server'].get('p50_bucket_ms', float('nan')):g}, <= "
         f"{api['server'].get('p99_bucket_ms', float('nan')):g}", ""),
        ("API state reads from the committed view / RocksDB", "-",
         f"{api['server'].get('state_reads_hot', 0)} / "
         f"{api['server'].get('state_reads_store', 0)}", ""),
        ("API non-200 / unknown users / wrk errors", "-",
         f"{api['non200']} / {api['unknown_users']} / {sum(api['errors'].values())}", ""),
    ]
    print("| | A: pipeline only | B: pipeline + API | B / A |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for line in v["lines"]:
        print(f"- {line}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10000, help="offered input events/s")
    parser.add_argument("--seconds", type=float, default=24.0,
                        help="input seconds per phase; the run takes about 6x this in all "
                             "(more for longer phases: readback grows with the input)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of input before the measured window (wrk starts then)")
    parser.add_argument("--api-rate", type=int, default=TARGET_API_RATE,
                        help="score requests/s wrk paces itself to")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk connections (enough that the pacing, not the connections, "
                             "sets the rate while latency is under connections / rate)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--api-threads", type=int, default=None,
                        help="api.threads of the daemon (default: the config's default, 2)")
    parser.add_argument("--model", default="default", help="bench model (loadlib.MODELS)")
    parser.add_argument("--events", default=DEFAULT_EVENTS,
                        help="input events (JSON lines); the default is generated when missing")
    parser.add_argument("--smoke", action="store_true",
                        help="a short run at low rates (2000 events/s, 100 requests/s, 6 s "
                             "phases) that checks the benchmark works; its figures mean little")
    args = parser.parse_args()
    args.candidates = 100
    args.idle_ms, args.read_idle_ms = 3000, 3000
    if args.smoke:
        args.rate, args.seconds, args.warmup, args.api_rate = 2000, 6.0, 2.0, 100
        args.connections, args.idle_ms, args.read_idle_ms = 4, 1500, 1500
    # wrk runs from the warm-up's end to a second before the input ends.
    args.api_seconds = int(args.seconds - args.warmup - 1)
    if args.api_seconds < 1:
        parser.error("--seconds must exceed --warmup by at least 2")
    if args.rate * args.seconds > 1_000_000 and args.events == DEFAULT_EVENTS:
        parser.error("the default input holds 1M events: lower --rate x --seconds")

    started = time.time()
    ensure_events(args.events)
    build_rotor()
    bundle = make_bundle(args.model)
    work = tempfile.mkdtemp(prefix="rotor-apiload-")
    requests_path = os.path.join(work, "requests.tsv")
    requests_file(args.events, requests_path, candidates=args.candidates)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                  if l.startswith("model name")), "?"),
               "load_average_at_start": load_average()}
    log(f"load average at start: {machine['load_average_at_start']}")
    with Broker("apiload") as broker:
        # A fresh broker is slow at first (JIT, first topics): without this, phase A, which
        # runs first, had 5x phase B's p99 in a smoke run.
        log(f"broker warm-up: {args.rate} events/s for {args.warmup + 2:g} s, not measured")
        run_phase("warm-up", broker, bundle, argparse.Namespace(
            **{**vars(args), "seconds": args.warmup + 2, "api_seconds": 1, "idle_ms": 1000}),
            requests_path,
            work)
        log(f"phase A: pipeline only, {args.rate} events/s for {args.seconds:g} s")
        a = run_phase("A", broker, bundle, args, requests_path, work)
        log(json.dumps(a))
        log(f"phase B: the same plus {args.api_rate} score requests/s of {args.candidates} "
            f"candidates for {args.api_seconds} s")
        b = run_phase("B", broker, bundle, args, requests_path, work)
        log(json.dumps(b))
    v = verdicts(a, b, args)
    # At start only this script runs; during the phases the run's own processes (broker,
    # rotor, rotor produce, wrk) add 3-4 to the load average by themselves.
    start_load = machine["load_average_at_start"][0]
    if start_load > 0.75 * (os.cpu_count() or 1):
        v["lines"].append(f"the machine was busy before the run (1-minute load average "
                          f"{start_load:.1f} on {os.cpu_count()} CPUs): other work shared the "
                          f"cores; rerun when it is quieter")
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
              "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
              "machine": machine, "model": args.model, "smoke": args.smoke,
              "api_threads": args.api_threads,
              "wall_s": time.time() - started, "A": a, "B": b,
              "verdicts": {k: x for k, x in v.items() if k != "lines"}, "summary": v["lines"]}
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, "api_load-smoke.json" if args.smoke else "api_load.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"rotor HTTP API under load, {report['date']}, {machine['cpus']} CPUs "
          f"({machine['cpu_model']}), load average {machine['load_average_at_start']} at start, "
          f"{a['load_average_after']} after A, {b['load_average_after']} after B; "
          f"{args.model} model, {args.rate} events/s offered, window {args.api_seconds} s, "
          f"api.threads {args.api_threads or 'default (2)'}; "
          f"{report['wall_s']:.0f} s in all")
    print()
    print_table(a, b, v)
    print(f"\n(JSON: {os.path.relpath(out, ROOT)})")
    broken = []
    if a["unmatched"] or b["unmatched"]:
        broken.append("input events that no delta carried")
    api = b["api"]
    if api["non200"] or sum(api["errors"].values()) or api["requests"] == 0:
        broken.append("API requests that failed (non-200 or wrk errors) or none at all")
    if broken:
        log("the run broke: " + "; ".join(broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
