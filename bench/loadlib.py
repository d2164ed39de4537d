"""Shared pieces of the end-to-end benchmarks (bench/load.py, bench/api_load.py).

A real Kafka broker on loopback (tools/kafka/broker.sh), fresh topics per run, `rotor serve`
(release build) fed by `rotor produce --rate R`, and every input event matched to the delta
that first carried it, for event-to-publish latency. Standard library only; the bundle maker
imports `sirenrope` from python/ (Debian's torch). Run with /usr/bin/python3.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
# ROTOR_BINARY: another build of rotor (an A/B of two binaries on the same broker and input).
ROTOR = os.environ.get("ROTOR_BINARY") or os.path.join(ROOT, "build", "release", "app", "rotor")
PYTHON = "/usr/bin/python3"  # The project's interpreter (Debian's torch and numpy).
BROKER = os.path.join(ROOT, "tools", "kafka", "broker.sh")
RESULTS = os.path.join(ROOT, "build", "bench-results")
DEFAULT_EVENTS = os.path.join(ROOT, "data", "synth-1000000-seed1-u10000.jsonl")
MODELS = {
    "default": dict(d_model=64, n_heads=2, n_layers=2, d_angle=4, angle_hidden=16),
    "paper": dict(d_model=128, n_heads=4, n_layers=2, d_angle=4, angle_hidden=64),
}

_log_name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bench"


def log(msg):
    print(f"[{_log_name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_bundle(model, out_dir=os.path.join(ROOT, "build", "bench-bundles")):
    """The siren bundle of `model` (MODELS) on the synthetic schema, seeded random weights."""
    from sirenrope.bundle import export_bundle
    from sirenrope.config import ModelConfig, synthetic_schema
    from sirenrope.golden import perturbed_model

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"load-{model}.bundle.safetensors")
    if not os.path.exists(path):
        cfg = ModelConfig(variant="siren", window=64, schema=synthetic_schema(), **MODELS[model])
        export_bundle(perturbed_model(cfg, 7), path)
    return path


def events_path(events, users):
    """data/synth-<events>-seed1-u<users>.jsonl: the synthetic input ensure_input makes."""
    return os.path.join(ROOT, "data", f"synth-{events}-seed1-u{users}.jsonl")


def ensure_input(path, events, users):
    """Generates `events` events of `users` distinct users (sirenrope.synth, seed 1) at path
    when missing."""
    if os.path.exists(path):
        return path
    log(f"generating {path} ({events} events of {users} users)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    subprocess.run([PYTHON, "-m", "sirenrope.synth", "--events", str(events), "--users",
                    str(users), "--seed", "1", "--config",
                    os.path.join(ROOT, "configs", "demo.json"), "--out", path + ".tmp"],
                   cwd=os.path.join(ROOT, "python"), check=True, stdout=subprocess.DEVNULL)
    os.replace(path + ".tmp", path)
    return path


def ensure_events(path):
    """Generates the default input (1M events of 10,000 users, sirenrope.synth) when missing."""
    return ensure_input(path, 1000000, 10000)


# The release build directory is shared with other work on this machine: every configure and
# build of it holds this lock.
BUILD_LOCK = "/tmp/rotor-release-build.lock"


def build_rotor(targets=("rotor",)):
    log(f"building {', '.join(targets)} (release)")
    subprocess.run(["flock", BUILD_LOCK, "cmake", "--preset", "release"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["flock", BUILD_LOCK, "cmake", "--build", "--preset", "release", "--target",
                    *targets, "-j2"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def rotor(*args, capture=True):
    done = subprocess.run([ROTOR, *map(str, args)], capture_output=capture, text=True)
    if done.returncode != 0:
        sys.exit(f"rotor {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Broker:
    """A broker from tools/kafka/broker.sh, as a context manager (stopped on exit).

    It runs at the daemon's priority (broker.sh defaults to nice 19, for tests): it competes
    for the same cores on equal terms, as beside a real deployment.
    """

    def __init__(self, name):
        self.name = name
        self.env = dict(os.environ, ROTOR_KAFKA_STATE=os.path.join(ROOT, "build", "kafka"),
                        ROTOR_KAFKA_NICE="0")
        self.bootstrap = None
        self.pid = None

    def _run(self, *args, capture=False):
        return subprocess.run([BROKER, *args, "--name", self.name], env=self.env, check=True,
                              capture_output=capture, text=True,
                              stdout=None if capture else subprocess.DEVNULL)

    def __enter__(self):
        self._run("start", "--replace")
        try:
            self.bootstrap = self._run("bootstrap", capture=True).stdout.strip()
            self.pid = int(self._run("status", capture=True).stdout.split()[3])
        except BaseException:
            self.stop()
            raise
        return self

    def delete_topics(self, prefix, timeout_s=60):
        """Deletes every topic whose name starts with `prefix` (a run's topics, once measured).

        A drain leaves gigabytes of log on the broker (1M events: ~4 GB of deltas and
        changelog); a --targets --levers run of 17 drains filled the disk before this. The
        broker removes the files log.segment.delete.delay.ms after (1 s, broker.py)."""
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [t for t in admin.list_topics(timeout=timeout_s).topics if t.startswith(prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=timeout_s).values():
                future.result(timeout=timeout_s)

    def stop(self):
        subprocess.run([BROKER, "stop", "--name", self.name], env=self.env,
                       stdout=subprocess.DEVNULL)

    def __exit__(self, *exc):
        self.stop()


# Daemon settings every config write_config makes carries ("section.key" -> YAML value), e.g.
# {"state.wal": "false"} (load.py's --set).
SETTINGS = {}


def apply_settings(text, settings):
    """text (a daemon config) with each "section.key": value of settings set: the key is added
    under its section (made when missing); a key already there is replaced."""
    for name, value in settings.items():
        section, key = name.split(".", 1)
        lines = text.split("\n")
        if f"{section}:" not in lines:
            lines += [f"{section}:", f"  {key}: {value}"]
        else:
            at = lines.index(f"{section}:") + 1
            end = at
            while end < len(lines) and lines[end].startswith("  "):
                end += 1
            lines = [ln for i, ln in enumerate(lines)
                     if not (at <= i < end and ln.strip().startswith(f"{key}:"))]
            lines.insert(at, f"  {key}: {value}")
        text = "\n".join(lines)
    return text + ("" if text.endswith("\n") else "\n")


def write_config(path, tag, bootstrap, bundle, state_dir, inflight=8, api_listen="127.0.0.1:0",
                 api_threads=None, extra="", settings=None):
    """A daemon config for fresh topics named after tag; the API on api_listen (None: off)
    with api_threads server threads (None: the config's default); SETTINGS and then
    `settings` ({"section.key": value}) applied."""
    api = (f"api:\n  enabled: true\n  listen: \"{api_listen}\"\n" if api_listen
           else "api:\n  enabled: false\n")
    if api_listen and api_threads:
        api += f"  threads: {api_threads}\n"
    text = f"""
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
  dir: {state_dir}
  sync_writes: false
log:
  stats_interval_ms: 0
{api}{extra}"""
    with open(path, "w") as f:
        f.write(apply_settings(text, {**SETTINGS, **(settings or {})}))
    return path


def start_serve(config, serve_log, exit_when_idle_ms=3000, timeout_s=60):
    """Starts `rotor serve` and waits until it has partitions.

    Returns (process, API port or None). The port is the one the daemon logged as listening
    (the config may ask for port 0).
    """
    with open(serve_log, "w") as out:
        serve = subprocess.Popen([ROTOR, "serve", "--config", config, "--exit-when-idle-ms",
                                  str(exit_when_idle_ms)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        text = open(serve_log).read()
        if "assigned" in text:
            break
        if time.monotonic() > deadline or serve.poll() is not None:
            serve.kill()
            sys.exit(f"rotor serve did not get partitions:\n{text[-3000:]}")
        time.sleep(0.2)
    m = re.search(r"API listening on [^\s]*:([0-9]+)", text)
    return serve, int(m.group(1)) if m else None


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


class Samplers:
    """CPU and RSS samples of several processes on threads, from start() until stop()."""

    def __init__(self, **pids):
        self.samples = {name: [] for name in pids}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=sample_process,
                                          args=(pid, self.samples[name], self._stop))
                         for name, pid in pids.items()]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join()

    def cores(self, name, since=None, until=None):
        """CPU cores (user+system over wall) of name, over the samples in [since, until]."""
        points = [p for p in self.samples[name]
                  if (since is None or p[0] >= since) and (until is None or p[0] <= until)]
        if len(points) < 2:
            return float("nan")
        return (points[-1][1] - points[0][1]) / max(1e-9, points[-1][0] - points[0][0])

    def peak_rss_mib(self, name):
        return max((s[2] for s in self.samples[name]), default=0) / 2**20


def header_metadata(value):
    (n,) = struct.unpack("<Q", value[:8])
    return json.loads(value[8:8 + n]).get("__metadata__", {})


def header_metadata_b64(value_b64):
    """header_metadata of a base64 value, decoding only the safetensors header's characters."""
    (n,) = struct.unpack("<Q", base64.b64decode(value_b64[:12])[:8])
    end = min(len(value_b64), (8 + n + 2) // 3 * 4)
    return header_metadata(base64.b64decode(value_b64[:end]))


def read_topic(config, topic, keep, idle_ms=3000):
    """keep(message dict) for every message of topic, streamed from `rotor consume --json`."""
    out = []
    proc = subprocess.Popen([ROTOR, "consume", "--config", config, "--topic", topic, "--json",
                             "--idle-ms", str(idle_ms)], stdout=subprocess.PIPE,
                            text=True)
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


def event_latencies(config, tag, idle_ms=3000):
    """Matches every input event of tag's topics to the delta that first carried it.

    Returns a dict: "events" [(input CreateTime ms, latency ms or None when no delta carried
    it)] in input order per partition, "deltas" (output message count), "last_out_ms".
    Latency is the delta's Kafka CreateTime minus the event's (both stamped on this machine).
    """
    inputs = read_topic(config, f"{tag}.events", lambda m: (
        m["key"], m["offset"], m["timestamp_ms"]), idle_ms)
    outputs = read_topic(config, f"{tag}.tensors", lambda m: (
        header_metadata_b64(m["value_b64"]), m["timestamp_ms"]), idle_ms)
    deltas = {}  # user -> sorted [(source_offset, timestamp)]
    for meta, timestamp_ms in outputs:
        deltas.setdefault(meta["rotor.user_id"], []).append(
            (int(meta["rotor.source_offset"]), timestamp_ms))
    for v in deltas.values():
        v.sort()
    events = []
    for key, offset, timestamp_ms in inputs:
        user_deltas = deltas.get(key, [])
        i = bisect.bisect_left(user_deltas, (offset, -1))
        # A delta's source offset is the user's last event in that batch of that partition.
        while i < len(user_deltas) and user_deltas[i][0] < offset:
            i += 1
        events.append((timestamp_ms, user_deltas[i][1] - timestamp_ms
                       if i < len(user_deltas) else None))
    return {"events": events, "deltas": len(outputs),
            "last_out_ms": max((t for _, t in outputs), default=float("nan"))}


def load_average():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_times():
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def drop_page_cache():
    """Writes back dirty pages and drops the clean page cache (root only; a no-op otherwise).
    Each drain writes gigabytes (the broker's logs, RocksDB): later runs of a sequence otherwise
    pay for the kernel reclaiming that cache (half their CPU time in the kernel, measured at
    42-69 us of CPU per event where the same drain alone took 28-37). Called before each run's
    input is produced, so the run's own input stays cached as it would be for a fresh backlog.
    Returns whether the cache was dropped."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def settle(quiet_s=2, busy_share=0.15, max_s=60):
    """Waits until the machine is quiet (at most busy_share of all CPU time busy in each of
    quiet_s consecutive seconds, max_s at most): the previous run's leftovers (the broker deleting
    its topics, RocksDB's files removed, dirty pages written back) otherwise land on the next
    run, which is how one drain measured exactly-once at 0.71 of at-least-once and the next at
    0.94. Returns the seconds waited."""
    began = time.monotonic()
    quiet = 0
    before = cpu_times()
    while quiet < quiet_s and time.monotonic() - began < max_s:
        time.sleep(1.0)
        after = cpu_times()
        busy, total = after[0] - before[0], after[1] - before[1]
        before = after
        quiet = quiet + 1 if total > 0 and busy / total <= busy_share else 0
    return round(time.monotonic() - began, 1)
