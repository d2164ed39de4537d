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
not part of tools/test.sh. Results: stdout and build/bench-results/load.json.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import base64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
ROTOR = os.path.join(ROOT, "build", "release", "app", "rotor")
PYTHON = "/usr/bin/python3"  # The project's interpreter (Debian's torch and numpy).
BROKER = os.path.join(ROOT, "tools", "kafka", "broker.sh")
MODELS = {
    "default": dict(d_model=64, n_heads=2, n_layers=2, d_angle=4, angle_hidden=16),
    "paper": dict(d_model=128, n_heads=4, n_layers=2, d_angle=4, angle_hidden=64),
}


def log(msg):
    print(f"[load.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_bundle(model, out_dir):
    from sirenrope.bundle import export_bundle
    from sirenrope.config import ModelConfig, synthetic_schema
    from sirenrope.golden import perturbed_model

    path = os.path.join(out_dir, f"load-{model}.bundle.safetensors")
    if not os.path.exists(path):
        cfg = ModelConfig(variant="siren", window=64, schema=synthetic_schema(), **MODELS[model])
        export_bundle(perturbed_model(cfg, 7), path)
    return path


def rotor(*args, capture=True):
    done = subprocess.run([ROTOR, *map(str, args)], capture_output=capture, text=True)
    if done.returncode != 0:
        sys.exit(f"rotor {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def sample_process(pid, samples, stop):
    """Appends (wall, cpu seconds, rss bytes) of pid every 0.25 s until stop is set."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            rss = int(fields[21]) * page
            samples.append((time.monotonic(), cpu, rss))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        time.sleep(0.25)


def header_metadata(value):
    (n,) = struct.unpack("<Q", value[:8])
    return json.loads(value[8:8 + n]).get("__metadata__", {})


def read_topic(config, topic, keep):
    """keep(message dict) for every message of topic, streamed from `rotor consume --json`."""
    out = []
    proc = subprocess.Popen([ROTOR, "consume", "--config", config, "--topic", topic, "--json",
                             "--idle-ms", "3000"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip():
            out.append(keep(json.loads(line)))
    if proc.wait() != 0:
        sys.exit(f"rotor consume --topic {topic} failed")
    return out


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def one_run(bootstrap, broker_pid, bundle, model, rate, inflight, seconds, warmup_s, events_file,
            work):
    tag = f"load-{model}-{rate}-{inflight}-{uuid.uuid4().hex[:6]}"
    config = os.path.join(work, f"{tag}.yaml")
    with open(config, "w") as f:
        f.write(f"""
model:
  bundle: {bundle}
kafka:
  bootstrap_servers: "{bootstrap}"
  group_id: {tag}
  input_topic: {tag}.events
  output_topic: {tag}.tensors
  dead_letter_topic: {tag}.dead
pipeline:
  max_inflight_batches: {inflight}
output:
  snapshot_interval_ms: 0
state:
  dir: {os.path.join(work, tag)}
  sync_writes: false
log:
  stats_interval_ms: 0
api:
  enabled: false  # The pipeline alone (the API's load is measured on its own).
""")
    rotor("topics", "--config", config, "--partitions", "8")
    serve_log = os.path.join(work, f"{tag}.log")
    with open(serve_log, "w") as out:
        serve = subprocess.Popen([ROTOR, "serve", "--config", config, "--exit-when-idle-ms",
                                  "3000"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "assigned" not in open(serve_log).read():
        if time.monotonic() > deadline or serve.poll() is not None:
            sys.exit(f"rotor serve did not get partitions:\n{open(serve_log).read()}")
        time.sleep(0.2)
    samples, broker_samples, stop = [], [], threading.Event()
    samplers = [threading.Thread(target=sample_process, args=(serve.pid, samples, stop)),
                threading.Thread(target=sample_process, args=(broker_pid, broker_samples, stop))]
    for sampler in samplers:
        sampler.start()
    limit = int(rate * seconds)
    produced = rotor("produce", "--config", config, "--file", events_file, "--rate", rate,
                     "--limit", limit)
    serve.wait(timeout=600)
    stop.set()
    for sampler in samplers:
        sampler.join()
    if serve.returncode != 0:
        sys.exit(f"rotor serve exited {serve.returncode}:\n{open(serve_log).read()[-3000:]}")

    inputs = read_topic(config, f"{tag}.events", lambda m: {
        "key": m["key"], "offset": m["offset"], "timestamp_ms": m["timestamp_ms"]})
    outputs = read_topic(config, f"{tag}.tensors", lambda m: (
        header_metadata(base64.b64decode(m["value_b64"])), m["timestamp_ms"]))
    deltas = {}  # user -> sorted [(source_offset, timestamp)]
    for meta, timestamp_ms in outputs:
        deltas.setdefault(meta["rotor.user_id"], []).append(
            (int(meta["rotor.source_offset"]), timestamp_ms))
    for v in deltas.values():
        v.sort()
    latencies, steady, missing = [], [], 0
    first_in = min(m["timestamp_ms"] for m in inputs)
    for m in inputs:
        user_deltas = deltas.get(m["key"], [])
        i = bisect.bisect_left(user_deltas, (m["offset"], -1))
        # A delta's source offset is the user's last event in that batch of that partition.
        while i < len(user_deltas) and user_deltas[i][0] < m["offset"]:
            i += 1
        if i == len(user_deltas):
            missing += 1
            continue
        latency = user_deltas[i][1] - m["timestamp_ms"]
        latencies.append(latency)
        if m["timestamp_ms"] - first_in >= warmup_s * 1000:
            steady.append(latency)
    latencies.sort()
    steady.sort()
    last_out = max(timestamp_ms for _, timestamp_ms in outputs)
    def cores(points):
        return (points[-1][1] - points[0][1]) / max(1e-9, points[-1][0] - points[0][0])

    cpu = cores(samples)
    achieved = float(produced.split("(")[1].split("/s")[0])
    return {
        "model": model, "inflight": inflight, "offered_per_s": rate,
        "achieved_input_per_s": achieved,
        "events": len(inputs), "unmatched": missing,
        "processed_per_s": len(inputs) / max(1e-3, (last_out - first_in) / 1000.0),
        "p50_ms": percentile(steady, 0.50), "p99_ms": percentile(steady, 0.99),
        "p999_ms": percentile(steady, 0.999),
        "all_p50_ms": percentile(latencies, 0.50), "all_p99_ms": percentile(latencies, 0.99),
        "all_p999_ms": percentile(latencies, 0.999),
        "cpu_cores": cpu, "broker_cpu_cores": cores(broker_samples),
        "peak_rss_mib": max(s[2] for s in samples) / 2**20,
        "deltas": len(outputs),
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
    parser.add_argument("--events", default=os.path.join(ROOT, "data",
                                                         "synth-1000000-seed1-u10000.jsonl"),
                        help="input events (JSON lines); the default is generated when missing "
                             "(1M events of 10,000 users, sirenrope.synth)")
    args = parser.parse_args()
    if not os.path.exists(args.events):
        log(f"generating {args.events}")
        os.makedirs(os.path.dirname(os.path.abspath(args.events)), exist_ok=True)
        subprocess.run([PYTHON, "-m", "sirenrope.synth", "--events", "1000000", "--users",
                        "10000", "--seed", "1", "--config", os.path.join(ROOT, "configs",
                                                                         "demo.json"),
                        "--out", args.events + ".tmp"],
                       cwd=os.path.join(ROOT, "python"), check=True, stdout=subprocess.DEVNULL)
        os.replace(args.events + ".tmp", args.events)
    log("building rotor (release)")
    subprocess.run(["cmake", "--preset", "release"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "rotor"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    # The broker runs at the daemon's priority (tools/kafka/broker.sh defaults to nice 19, for
    # tests): it competes for the same two cores on equal terms, as beside a real deployment.
    env = dict(os.environ, ROTOR_KAFKA_STATE=os.path.join(ROOT, "build", "kafka"),
               ROTOR_KAFKA_NICE="0")
    subprocess.run([BROKER, "start", "--name", "load", "--replace"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    results = []
    try:
        bootstrap = subprocess.run([BROKER, "bootstrap", "--name", "load"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
        status = subprocess.run([BROKER, "status", "--name", "load"], env=env, check=True,
                                capture_output=True, text=True).stdout.split()
        broker_pid = int(status[3])
        work = tempfile.mkdtemp(prefix="rotor-load-")
        bundle_dir = os.path.join(ROOT, "build", "bench-bundles")
        os.makedirs(bundle_dir, exist_ok=True)
        for model in args.models.split(","):
            bundle = make_bundle(model, bundle_dir)
            for rate in map(int, args.rates.split(",")):
                for inflight in map(int, args.inflight.split(",")):
                    log(f"{model} model at {rate} events/s for {args.seconds:g} s, "
                        f"{inflight} batch(es) in flight")
                    r = one_run(bootstrap, broker_pid, bundle, model, rate, inflight,
                                args.seconds, args.warmup, args.events, work)
                    log(json.dumps(r))
                    results.append(r)
    finally:
        subprocess.run([BROKER, "stop", "--name", "load"], env=env, stdout=subprocess.DEVNULL)
    os.makedirs(os.path.join(ROOT, "build", "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "build", "bench-results", "load.json"), "w") as f:
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
