"""Peak memory of `rotor serve` under a flood of distinct users, against the documented bound.

docs/configuration.md ("Memory") says what bounds each part of the daemon's memory; this test
holds it to that. On the real broker of the kafka_broker fixture, with the release binary
(sanitizers multiply memory, so the debug build cannot be measured):

  baseline  the same binary, bundle and settings serving 2,000 events of 20 users: what the
            process needs whatever the input (code, libraries, the bundle, thread stacks,
            the allocator's arenas, RocksDB's and librdkafka's fixed structures);
  flood     200,000 events of 200,000 distinct users, so every event loads, grows and commits
            a new window: the case that used to peak near 1 GB whatever the budgets said.

Both peaks are the kernel's high-water mark of the process (ru_maxrss from wait4). The flood
must stay within

  baseline + state.block_cache_bytes + state.window_cache_bytes + pipeline.max_inflight_bytes
           + one window + queue.buffering.max.kbytes + queued.max.messages.kbytes

the sum the docs give, with the small budgets an operator squeezing memory would set (block
cache 32 MiB, window cache 16 MiB, in flight 32 MiB), and every event must have been applied.

  /usr/bin/python3 integration_tests/memory_test.py --rotor build/release/app/rotor --name ctest
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "kafka"))
sys.path.insert(0, str(ROOT / "python"))
import broker  # noqa: E402

PY = "/usr/bin/python3"
MIB = 1 << 20
# The bench's default model (bench/load.py): window 64, d_model 64, 2 layers: 98 KiB windows.
MODEL = dict(d_model=64, n_heads=2, n_layers=2, d_angle=4, angle_hidden=16, window=64)
BUDGETS = {
    "state.block_cache_bytes": 32 * MIB,
    "state.window_cache_bytes": 16 * MIB,
    "pipeline.max_inflight_bytes": 32 * MIB,
    # rotor's defaults for librdkafka's queues (docs/configuration.md, Memory).
    "queue.buffering.max.kbytes": 64 * MIB,
    "queued.max.messages.kbytes": 16 * MIB,
}


def fail(message):
    raise AssertionError(message)


def make_bundle(work):
    path = work / "memory.bundle.safetensors"
    code = (
        "import sys\n"
        "from sirenrope.bundle import export_bundle\n"
        "from sirenrope.config import ModelConfig, synthetic_schema\n"
        "from sirenrope.golden import perturbed_model\n"
        f"cfg = ModelConfig(variant='siren', schema=synthetic_schema(), **{MODEL!r})\n"
        "export_bundle(perturbed_model(cfg, 7), sys.argv[1])\n")
    subprocess.run([PY, "-c", code, str(path)], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    return path


def synth(work, events, users):
    path = work / f"events-{events}-{users}.jsonl"
    subprocess.run([PY, "-m", "sirenrope.synth", "--events", str(events), "--users", str(users),
                    "--seed", "11", "--out", str(path)], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    return path


class Run:
    def __init__(self, rotor, bootstrap, work, name, bundle):
        self.rotor = rotor
        self.work = work
        tag = f"it.memory-{name}-{uuid.uuid4().hex[:8]}"
        self.config = work / f"{name}.yaml"
        self.config.write_text(f"""
model:
  bundle: {bundle}
kafka:
  bootstrap_servers: "{bootstrap}"
  group_id: {tag}
  input_topic: {tag}.events
  output_topic: {tag}.tensors
  dead_letter_topic: {tag}.dead
pipeline:
  max_inflight_bytes: {BUDGETS['pipeline.max_inflight_bytes']}
output:
  snapshot_interval_ms: 0
state:
  dir: {work / ('state-' + name)}
  sync_writes: false
  block_cache_bytes: {BUDGETS['state.block_cache_bytes']}
  write_buffer_bytes: {BUDGETS['state.block_cache_bytes'] // 2}
  window_cache_bytes: {BUDGETS['state.window_cache_bytes']}
log:
  stats_interval_ms: 0
api:
  listen: "127.0.0.1:0"  # A free port: never in another run's way.
""")

    def rotor_cmd(self, *args):
        done = subprocess.run([self.rotor, *map(str, args)], capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            fail(f"rotor {' '.join(map(str, args))} exited {done.returncode}:\n"
                 f"{done.stdout}{done.stderr}")
        return done.stdout

    def serve(self, events):
        """Produces `events`, serves them until idle; returns (peak RSS bytes, log)."""
        self.rotor_cmd("topics", "--config", self.config, "--partitions", "4")
        self.rotor_cmd("produce", "--config", self.config, "--file", events)
        log = self.work / f"{self.config.stem}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([self.rotor, "serve", "--config", str(self.config),
                                     "--exit-when-idle-ms", "3000"],
                                    stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                fail(f"rotor serve did not finish in 600 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        text = log.read_text()
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            fail(f"rotor serve ended with status {status}:\n{text[-3000:]}")
        return usage.ru_maxrss * 1024, text


def events_applied(log):
    found = re.search(r"rotor serve: (\d+) events", log)
    return int(found.group(1)) if found else -1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotor", required=True, help="the release build's rotor binary")
    parser.add_argument("--name", default="ctest", help="the broker.sh broker to use")
    parser.add_argument("--users", type=int, default=200000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not os.path.exists(args.rotor):
        print(f"memory_test: no release binary at {args.rotor}: build it first with "
              "`cmake --preset release && cmake --build --preset release --target rotor` "
              "(tools/test.sh does)", file=sys.stderr)
        return 1
    bootstrap = broker.bootstrap_of(args.name)
    work = Path(tempfile.mkdtemp(prefix="rotor-it-memory-"))
    ok = False
    try:
        bundle = make_bundle(work)
        window_bytes = MODEL["window"] * (MODEL["n_layers"] + 1) * 2 * MODEL["d_model"] * 4
        base_peak, base_log = Run(args.rotor, bootstrap, work, "baseline", bundle).serve(
            synth(work, 2000, 20))
        if events_applied(base_log) != 2000:
            fail(f"the baseline applied {events_applied(base_log)} of 2000 events:\n"
                 f"{base_log[-2000:]}")
        flood_peak, flood_log = Run(args.rotor, bootstrap, work, "flood", bundle).serve(
            synth(work, args.users, args.users))
        if events_applied(flood_log) != args.users:
            fail(f"the flood applied {events_applied(flood_log)} of {args.users} events:\n"
                 f"{flood_log[-2000:]}")
        budgets = sum(BUDGETS.values()) + window_bytes
        bound = base_peak + budgets
        parts = ", ".join(f"{k} {v / MIB:.0f}" for k, v in BUDGETS.items())
        print(f"memory: baseline peak {base_peak / MIB:.0f} MiB; flood of {args.users} users "
              f"peak {flood_peak / MIB:.0f} MiB; bound {bound / MIB:.0f} MiB = baseline + "
              f"budgets {budgets / MIB:.0f} MiB ({parts}, one window "
              f"{window_bytes / 1024:.0f} KiB); headroom {(bound - flood_peak) / MIB:.0f} MiB")
        if flood_peak > bound:
            fail(f"peak RSS {flood_peak / MIB:.0f} MiB under a flood of {args.users} distinct "
                 f"users is over the documented bound {bound / MIB:.0f} MiB")
        ok = True
    except AssertionError as e:
        print(f"FAIL (memory): {e}\nwork directory: {work}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("PASS memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
