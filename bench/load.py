"""End-to-end load benchmark of `rotor serve` against a real Kafka broker on loopback.

For each model and each offered rate: fresh topics (8 partitions) on a broker started by
tools/kafka/broker.sh, `rotor serve` (release build, at-least-once), `rotor produce --rate R`
for the given seconds, then both topics are read back and every input event is matched to the
delta that first carried it (same user, source offset >= the event's offset). Reported per
run: the offered and achieved input rates, events/s processed (events over first input to
last output), event-to-publish latency p50/p99/p999 (Kafka CreateTime of the delta minus that
of the event; both stamped on this machine) after a warm-up (--warmup, default 2 s) and p99
over all events, the daemon's CPU (user+system over wall) and
peak RSS.

    /usr/bin/python3 bench/load.py                       # default + paper model, 10k and 20k/s
    /usr/bin/python3 bench/load.py --rates 5000,40000 --seconds 10 --models default

Needs data/synth-200000-seed0.jsonl (tools/demo.sh writes it) and Maven's Kafka jars
(tools/kafka/fetch.sh). Slow by design (about a minute per run): not part of tools/test.sh.
Results: stdout and build/bench-results/load.json.
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


def read_json_lines(config, topic):
    out = rotor("consume", "--config", config, "--topic", topic, "--json", "true",
                "--idle-ms", "3000")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def one_run(bootstrap, bundle, model, rate, seconds, warmup_s, events_file, work):
    tag = f"load-{model}-{rate}-{uuid.uuid4().hex[:6]}"
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
output:
  snapshot_interval_ms: 0
state:
  dir: {os.path.join(work, tag)}
  sync_writes: false
log:
  stats_interval_ms: 0
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
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_process, args=(serve.pid, samples, stop))
    sampler.start()
    limit = int(rate * seconds)
    produced = rotor("produce", "--config", config, "--file", events_file, "--rate", rate,
                     "--limit", limit)
    serve.wait(timeout=600)
    stop.set()
    sampler.join()
    if serve.returncode != 0:
        sys.exit(f"rotor serve exited {serve.returncode}:\n{open(serve_log).read()[-3000:]}")

    inputs = read_json_lines(config, f"{tag}.events")
    outputs = read_json_lines(config, f"{tag}.tensors")
    deltas = {}  # user -> sorted [(source_offset, timestamp)]
    for m in outputs:
        meta = header_metadata(base64.b64decode(m["value_b64"]))
        deltas.setdefault(meta["rotor.user_id"], []).append(
            (int(meta["rotor.source_offset"]), m["timestamp_ms"]))
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
    last_out = max(m["timestamp_ms"] for m in outputs)
    cpu = (samples[-1][1] - samples[0][1]) / max(1e-9, samples[-1][0] - samples[0][0])
    achieved = float(produced.split("(")[1].split("/s")[0])
    return {
        "model": model, "offered_per_s": rate, "achieved_input_per_s": achieved,
        "events": len(inputs), "unmatched": missing,
        "processed_per_s": len(inputs) / max(1e-3, (last_out - first_in) / 1000.0),
        "p50_ms": percentile(steady, 0.50), "p99_ms": percentile(steady, 0.99),
        "p999_ms": percentile(steady, 0.999),
        "all_p50_ms": percentile(latencies, 0.50), "all_p99_ms": percentile(latencies, 0.99),
        "all_p999_ms": percentile(latencies, 0.999),
        "cpu_cores": cpu, "peak_rss_mib": max(s[2] for s in samples) / 2**20,
        "deltas": len(outputs),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10000,20000")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--models", default="default,paper")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of input left out of p50/p99/p999 (the all_* fields keep "
                             "them): the first events of a run wait ~1 s, a start-up transient "
                             "(most likely the generator's producer-id fetch; unconfirmed)")
    parser.add_argument("--events", default=os.path.join(ROOT, "data",
                                                         "synth-200000-seed0.jsonl"))
    args = parser.parse_args()
    if not os.path.exists(args.events):
        sys.exit(f"{args.events} is missing: run tools/demo.sh first")
    log("building rotor (release)")
    subprocess.run(["cmake", "--preset", "release"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "rotor"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, ROTOR_KAFKA_STATE=os.path.join(ROOT, "build", "kafka"))
    subprocess.run([BROKER, "start", "--name", "load", "--replace"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    results = []
    try:
        bootstrap = subprocess.run([BROKER, "bootstrap", "--name", "load"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
        work = tempfile.mkdtemp(prefix="rotor-load-")
        bundle_dir = os.path.join(ROOT, "build", "bench-bundles")
        os.makedirs(bundle_dir, exist_ok=True)
        for model in args.models.split(","):
            bundle = make_bundle(model, bundle_dir)
            for rate in map(int, args.rates.split(",")):
                log(f"{model} model at {rate} events/s for {args.seconds:g} s")
                r = one_run(bootstrap, bundle, model, rate, args.seconds, args.warmup, args.events,
                            work)
                log(json.dumps(r))
                results.append(r)
    finally:
        subprocess.run([BROKER, "stop", "--name", "load"], env=env, stdout=subprocess.DEVNULL)
    os.makedirs(os.path.join(ROOT, "build", "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "build", "bench-results", "load.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("| model | offered/s | achieved input/s | processed/s | p50 ms | p99 ms | p999 ms "
          "| p99 ms incl. warm-up | CPU cores | peak RSS MiB | unmatched |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['model']} | {r['offered_per_s']} | {r['achieved_input_per_s']:.0f} | "
              f"{r['processed_per_s']:.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
              f"{r['p999_ms']:.0f} | {r['all_p99_ms']:.0f} | {r['cpu_cores']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['unmatched']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
