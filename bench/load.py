"""End-to-end load benchmark of `rotor serve` against a real Kafka broker on loopback.

For each model, offered rate and in-flight setting: fresh topics (8 partitions) on a broker
started by tools/kafka/broker.sh (at nice 0, competing with rotor for the same cores),
`rotor serve` (release build, at-least-once, pipeline.max_inflight_batches = the setting),
`rotor produce --rate R` for the given seconds, then both topics are read back and every input
event is matched to the delta that first carried it (same user, source offset >= the event's
offset). Reported per run: the offered and achieved input rates, events/s processed (events
over first input to last output), event-to-publish latency p50/p99/p999 (Kafka CreateTime of
the delta minus that of the event; both stamped on this machine) after a warm-up (--warmup,
default 2 s) and p99 over all events, the CPU of rotor and of the broker (user+system over
wall), and rotor's peak RSS. In-flight 1 (one batch at a time) is the baseline measured in the
same run as the pipelined default (8).

    /usr/bin/python3 bench/load.py                       # default + paper model, 10k and 20k/s
    /usr/bin/python3 bench/load.py --rates 20000,60000 --seconds 6 --models default

Input: data/synth-1000000-seed1-u10000.jsonl (1M events of 10,000 users), generated on first
use. Needs Maven's Kafka jars (tools/kafka/fetch.sh). Slow by design (about a minute per run):
not part of tools/test.sh. Results: stdout and build/bench-results/load.json. The broker,
config, serve and latency-matching pieces are in bench/loadlib.py (shared with api_load.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid

from loadlib import (DEFAULT_EVENTS, RESULTS, Broker, Samplers, build_rotor, ensure_events,
                     event_latencies, log, make_bundle, percentile, rotor, start_serve,
                     write_config)


def one_run(broker, bundle, model, rate, inflight, seconds, warmup_s, events_file, work):
    tag = f"load-{model}-{rate}-{inflight}-{uuid.uuid4().hex[:6]}"
    # The pipeline alone, API off (bench/api_load.py measures the API's load).
    config = write_config(os.path.join(work, f"{tag}.yaml"), tag, broker.bootstrap, bundle,
                          os.path.join(work, tag), inflight=inflight, api_listen=None)
    rotor("topics", "--config", config, "--partitions", "8")
    serve_log = os.path.join(work, f"{tag}.log")
    serve, _ = start_serve(config, serve_log)
    samplers = Samplers(rotor=serve.pid, broker=broker.pid).start()
    limit = int(rate * seconds)
    produced = rotor("produce", "--config", config, "--file", events_file, "--rate", rate,
                     "--limit", limit)
    serve.wait(timeout=600)
    samplers.stop()
    if serve.returncode != 0:
        sys.exit(f"rotor serve exited {serve.returncode}:\n{open(serve_log).read()[-3000:]}")

    matched = event_latencies(config, tag)
    events = matched["events"]
    first_in = min(t for t, _ in events)
    latencies = sorted(lat for _, lat in events if lat is not None)
    steady = sorted(lat for t, lat in events
                    if lat is not None and t - first_in >= warmup_s * 1000)
    missing = sum(1 for _, lat in events if lat is None)
    achieved = float(produced.split("(")[1].split("/s")[0])
    return {
        "model": model, "inflight": inflight, "offered_per_s": rate,
        "achieved_input_per_s": achieved,
        "events": len(events), "unmatched": missing,
        "processed_per_s": len(events) / max(1e-3, (matched["last_out_ms"] - first_in) / 1000.0),
        "p50_ms": percentile(steady, 0.50), "p99_ms": percentile(steady, 0.99),
        "p999_ms": percentile(steady, 0.999),
        "all_p50_ms": percentile(latencies, 0.50), "all_p99_ms": percentile(latencies, 0.99),
        "all_p999_ms": percentile(latencies, 0.999),
        "cpu_cores": samplers.cores("rotor"), "broker_cpu_cores": samplers.cores("broker"),
        "peak_rss_mib": samplers.peak_rss_mib("rotor"),
        "deltas": matched["deltas"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10000,20000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--models", default="default,paper")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of input left out of p50/p99/p999 (the all_* fields keep "
                             "them); the first events used to wait up to ~1 s for the output "
                             "topic's metadata, which the daemon now fetches before serving")
    parser.add_argument("--inflight", default="1,8",
                        help="pipeline.max_inflight_batches values, each a run (1 = one batch "
                             "at a time: the same-run baseline of the pipelined default, 8)")
    parser.add_argument("--events", default=DEFAULT_EVENTS,
                        help="input events (JSON lines); the default is generated when missing "
                             "(1M events of 10,000 users, sirenrope.synth)")
    args = parser.parse_args()
    ensure_events(args.events)
    build_rotor()
    results = []
    work = tempfile.mkdtemp(prefix="rotor-load-")
    with Broker("load") as broker:
        for model in args.models.split(","):
            bundle = make_bundle(model)
            for rate in map(int, args.rates.split(",")):
                for inflight in map(int, args.inflight.split(",")):
                    log(f"{model} model at {rate} events/s for {args.seconds:g} s, "
                        f"{inflight} batch(es) in flight")
                    r = one_run(broker, bundle, model, rate, inflight, args.seconds,
                                args.warmup, args.events, work)
                    log(json.dumps(r))
                    results.append(r)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "load.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| model | in flight | offered/s | achieved input/s | processed/s | p50 ms | p99 ms "
          "| p999 ms | p99 ms incl. warm-up | rotor CPU cores | broker CPU cores "
          "| peak RSS MiB | unmatched |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['model']} | {r['inflight']} | {r['offered_per_s']} | "
              f"{r['achieved_input_per_s']:.0f} | {r['processed_per_s']:.0f} | "
              f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['p999_ms']:.0f} | "
              f"{r['all_p99_ms']:.0f} | {r['cpu_cores']:.2f} | {r['broker_cpu_cores']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['unmatched']} |")
    lost = [r for r in results if r["unmatched"]]
    if lost:
        log(f"{len(lost)} run(s) had input events that no delta carried: see 'unmatched'")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
