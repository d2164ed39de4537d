"""Integration tests of `rotor serve` against the real Kafka broker of the kafka_broker fixture.

Each case drives the real binaries (rotor topics/produce/serve/consume/replay/inspect) on fresh
topics, a fresh consumer group and fresh state directories, and checks the outputs and the
state against `rotor replay`, which runs the same events through the same encoders without
Kafka:

  events     events in -> tensors out: every user's state, and the rows rebuilt from the
             published deltas, equal the replayed state; every position is published
  bad        a table of bad inputs: each lands in the dead-letter topic with its reason and
             source offset, and the good events around them give exact state
  restart    kill -9 mid-stream, restart: the final state equals an uninterrupted run
  eos        exactly-once: 20 random kill -9 points; under read_committed every delta row
             appears exactly once and the state is exact
  scaleout   two instances in one group split the partitions; one stops, the other takes
             over its partitions and ends with the exact state of every user
  stall      the broker stops answering (SIGSTOP) for 4 s mid-backlog: produce requests time
             out as possibly persisted and are resent; state and outputs stay exact
  eos_failpoints
             exactly-once while input keeps arriving: kills at every commit edge (failpoints
             txn.after_commit, store.before_commit, store.after_commit,
             rebalance.revoke_after_drain at shutdown and when a second instance joins,
             rebalance.before_assign after a takeover) and at random points; each run dies
             where it was meant to and leaves more in the state, the runs after a kill between
             the Kafka and the RocksDB commit re-apply without publishing; every row once
  zombie     two exactly-once instances; one is frozen (SIGSTOP) past its session timeout
             with a transaction open, the other takes its partitions; thawed, the zombie's
             commit fails and it gives them up; no row twice, state exact
  snapshots  snapshot_interval_ms 200: every snapshot decodes, is a whole window of its user
             and equals the deltas' rows at its positions (and the state at the end)
  outage     the broker stopped (SIGSTOP) for 6 s, longer than message.timeout.ms (3 s):
             outputs time out, the batches are redone from the stored offsets; at-least-once
  outage_eos the same in exactly-once mode (the transaction is aborted and redone)
  changelog  the input deleted (DeleteRecords, as retention would) after one instance applied it:
             without a changelog a new instance's partitions stop; with it, a new instance
             restores all 6 partitions from the changelog, applies nothing from the input, holds
             the first one's state, goes on with new input to replay's state, every row once
  three      three exactly-once instances on 6 partitions while input flows: one killed with
             -9, another joining with no state (restoring from the changelog); a fresh instance
             then restores all 6 partitions from the changelog alone and holds replay's state;
             every row once under read_committed
  replay     `rotor replay --kafka` of the topic `rotor serve` consumed: killed with -9 at a
             commit (failpoint replay.after_commit) and run again, it resumes and ends with
             serve's state; with --publish, every position with serve's rows; --start @time
             replays only what came later; serve then continues from the replayed state
  upgrade    a blue/green model upgrade by tools/upgrade.py while input flows: green (another
             bundle, a new group and state, the same output topic) backfills from the input's
             beginning, catches up, the switch runs, blue stops (exit 0); then the rollback
             (blue back on its state, green stopped); each state equals the replay of every
             event with its bundle, and each model's rows appear once each under
             read_committed; a green on blue's state directory, and one that cannot catch
             up within --timeout, fail with blue untouched (the second resumes when rerun)

  /usr/bin/python3 integration_tests/daemon_test.py --rotor build/debug/app/rotor --case events
"""

import argparse
import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "kafka"))
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tools"))
import broker  # noqa: E402
import upgrade  # noqa: E402 (tools/upgrade.py: the blue/green upgrade the upgrade case drives)
from sirenrope.safetensors_io import decode  # noqa: E402

BUNDLE = ROOT / "testdata" / "golden" / "siren.bundle.safetensors"
# The upgrade case's new model ("green"): another variant, another window (4 rows, siren's 8).
GREEN_BUNDLE = ROOT / "testdata" / "golden" / "dnn_only.bundle.safetensors"
PY = "/usr/bin/python3"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Skip(Exception):
    """The case cannot run with this build; exits 77 (CTest's SKIP_RETURN_CODE)."""


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Case:
    """Fresh topics, group and directories for one test case."""

    def __init__(self, rotor, bootstrap, name, work):
        self.rotor = rotor
        self.bootstrap = bootstrap
        self.work = work
        self.wal = True  # state.wal (main's --no-wal).
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.topics = {"input": f"it.{tag}.events", "output": f"it.{tag}.tensors",
                       "dlq": f"it.{tag}.dead"}
        self.group = f"it-{tag}"
        self.logs = []
        self.procs = []  # Background processes, ended by cleanup().
        self.feeders = []
        self.detached = []  # Pids of daemons that are not our children (tools/upgrade.py's).

    def config(self, name, mode="at_least_once", batch=64, extra="", kafka_extra="",
               log_level="info", session_timeout_ms=6000, commit_interval_ms=100,
               snapshot_interval_ms=0, transaction_timeout_ms=60000, stats_interval_ms=0,
               api_extra="", bundle=BUNDLE, group=None, changelog=True):
        state = self.work / f"state-{name}"
        wal = "true" if self.wal else "false"
        path = self.work / f"{name}.yaml"
        group = group or self.group
        path.write_text(f"""
model:
  bundle: {bundle}
kafka:
  bootstrap_servers: "{self.bootstrap}"
  group_id: {group}
  input_topic: {self.topics['input']}
  output_topic: {self.topics['output']}
  dead_letter_topic: {self.topics['dlq']}
{'' if changelog else '  changelog_topic: ""'}
  session_timeout_ms: {session_timeout_ms}
{kafka_extra}
delivery:
  mode: {mode}
  transactional_id: {group}-{name}
  commit_interval_ms: {commit_interval_ms}
  transaction_timeout_ms: {transaction_timeout_ms}
pipeline:
  max_batch_events: {batch}
  max_message_bytes: 4096
output:
  snapshot_interval_ms: {snapshot_interval_ms}
state:
  dir: {state}
  sync_writes: false
  wal: {wal}
log:
  level: {log_level}
  stats_interval_ms: {stats_interval_ms}
api:
  listen: "127.0.0.1:0"  # A free port: several daemons run at once.
{api_extra}
{extra}
""")
        return path

    def run(self, *args, timeout=300):
        done = subprocess.run([self.rotor, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"rotor {' '.join(map(str, args))} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done.stdout

    def create_topics(self, config, partitions):
        """`rotor topics`, which returns once every partition's leader answers. A partition
        is in the metadata before its broker has loaded it, and a produce request then fails
        (NOT_LEADER_OR_FOLLOWER) while a later one to the same partition, already in flight,
        may succeed: the broker takes any first sequence number from a producer it has no
        state for, and librdkafka 2.0's idempotent producer then takes the failed message for
        delivered and never resends it. Seen with `rotor produce --rate` right after an
        earlier `rotor topics` that returned at once: a partition whose log began at sequence
        1, its first event lost, and `0 failed` reported. Every case's check_input or replay
        comparison would catch a loss."""
        self.run("topics", "--config", config, "--partitions", partitions)

    def check_input(self, config, path):
        """The input topic holds exactly the events of `path`, each once: what `rotor
        replay` is compared with is what the daemon could read."""
        want = [line for line in path.read_text().splitlines() if line.strip()]
        got = [base64.b64decode(m["value_b64"]).decode()
               for m in self.consume(config, self.topics["input"])]
        if sorted(got) != sorted(want):
            ids = lambda lines: {json.loads(line)["event_id"] for line in lines}  # noqa: E731
            raise AssertionError(
                f"the input topic holds {len(got)} events, the file {len(want)} (rotor produce "
                f"reported every one delivered); missing {sorted(ids(want) - ids(got))[:10]}, "
                f"extra or repeated: {len(got) - len(set(got))}")

    def serve(self, config, idle_ms=None, name="serve", failpoint=None):
        """Starts `rotor serve` (stdout and stderr to its own log); `failpoint`, as
        ROTOR_FAILPOINT takes it (`<name>[:<n>]`), kills it there."""
        log = self.work / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        args = [self.rotor, "serve", "--config", str(config)]
        if idle_ms:
            args += ["--exit-when-idle-ms", str(idle_ms)]
        env = dict(os.environ)
        env.pop("ROTOR_FAILPOINT", None)
        if failpoint:
            env["ROTOR_FAILPOINT"] = failpoint
        with open(log, "w") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        proc.log = log
        proc.text = lambda: log.read_text(errors="replace")
        return proc

    def killed_at(self, proc, point, timeout):
        """Waits for `proc` to die at failpoint `point` (SIGKILL, and its stderr says so)."""
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"rotor serve did not reach failpoint {point} in {timeout}s:\n"
                                 f"{proc.text()[-3000:]}")
        check(rc == -signal.SIGKILL, f"rotor serve exited {rc}, not killed at {point}:\n"
                                     f"{proc.text()[-3000:]}")
        check(f"failpoint {point}: killed" in proc.text(),
              f"killed, but not at failpoint {point}:\n{proc.text()[-3000:]}")

    def producer(self, config, path, rate):
        """`rotor produce --rate` in the background."""
        log = self.work / f"produce-{len(self.logs)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([self.rotor, "produce", "--config", str(config), "--file",
                                     str(path), "--rate", str(rate)], stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        proc.log = log
        return proc

    def finish_producer(self, proc, timeout=180):
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"rotor produce did not finish in {timeout}s")
        check(rc == 0, f"rotor produce exited {rc}:\n{proc.log.read_text()[-2000:]}")

    def cleanup(self):
        """Ends what a failed case left running (a frozen process is thawed to die)."""
        for feeder in self.feeders:
            feeder.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        for pid in self.detached:
            # Only a process of this case (its config is in the work directory): a pid may
            # have been reused since.
            if str(self.work) in " ".join(upgrade.cmdline(pid)) and upgrade.pid_running(pid):
                os.kill(pid, signal.SIGKILL)

    def applied(self, config):
        """Events in the state: the sum of every user's next_pos."""
        return sum(d["next_pos"] for d in self.dump(config).values())

    def wait(self, proc, timeout=300):
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"rotor serve did not finish in {timeout}s:\n"
                                 f"{proc.log.read_text()[-3000:]}")
        check(rc == 0, f"rotor serve exited {rc}:\n{proc.log.read_text()[-3000:]}")
        return proc.log.read_text()

    def produce(self, config, path):
        return self.run("produce", "--config", config, "--file", path)

    def consume(self, config, topic):
        out = self.run("consume", "--config", config, "--topic", topic, "--json",
                       "--idle-ms", "3000")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def dump(self, config):
        out = self.run("inspect", "--config", config, "--all")
        return {d["user"]: d for d in map(json.loads, out.splitlines())}

    def replay(self, events, bundle=BUNDLE):
        """The state `rotor replay --file` builds from `events` with `bundle`, user by user."""
        config = self.config(f"replay-{Path(bundle).name.split('.')[0]}", bundle=bundle)
        self.run("replay", "--config", config, "--file", events)
        return self.dump(config)


class Feeder:
    """Produces a file's events into the input topic in the background, in file order: at
    `rate` events/s (`rotor produce --rate`, a chunk at a time) until `finish` hurries it, then
    the rest at once. So input keeps arriving however long the steps meant to see it take, and
    what is left once they are done does not keep the test waiting."""

    def __init__(self, case, config, path, rate, chunk=120):
        self.case, self.config, self.rate = case, config, rate
        self.lines = path.read_text().splitlines()
        self.chunk = chunk
        self.sent = 0
        self.error = None
        self.hurry = threading.Event()
        self.stopped = False
        self.current = None
        case.feeders.append(self)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _produce(self, lines, rate):
        path = self.case.work / f"feed-{self.sent}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        args = [self.case.rotor, "produce", "--config", str(self.config), "--file", str(path)]
        if rate:
            args += ["--rate", str(rate)]
        self.current = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        _, err = self.current.communicate(timeout=300)
        if self.current.returncode != 0 and not self.stopped:
            raise RuntimeError(f"rotor produce exited {self.current.returncode}: {err[-2000:]}")
        self.sent += len(lines)

    def _run(self):
        try:
            while self.sent < len(self.lines) and not self.hurry.is_set() and not self.stopped:
                self._produce(self.lines[self.sent:self.sent + self.chunk], self.rate)
            if self.sent < len(self.lines) and not self.stopped:
                self._produce(self.lines[self.sent:], None)
        except Exception as e:  # noqa: BLE001 (reported by finish)
            self.error = e

    def flowing(self, what):
        """Fails unless events are still being produced at the rate (before `what`)."""
        check(self.error is None, f"feeding the input: {self.error}")
        check(self.thread.is_alive() and self.sent < len(self.lines) - self.chunk,
              f"the input ran out before {what} ({self.sent} events sent): the steps took "
              f"longer than {len(self.lines) / self.rate:.0f} s")

    def stop(self):
        """Stops producing (a failed case)."""
        self.stopped = True
        if self.current is not None and self.current.poll() is None:
            self.current.kill()
        self.thread.join(10)

    def finish(self, timeout=300):
        """Produces the rest at once; returns how many events were sent at the rate."""
        at_rate = self.sent
        self.hurry.set()
        self.thread.join(timeout)
        check(not self.thread.is_alive(), f"rotor produce did not finish in {timeout}s")
        check(self.error is None, f"feeding the input: {self.error}")
        return at_rate


def synth(work, events, users, seed):
    path = work / f"events-{events}-{seed}.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    subprocess.run([PY, "-m", "sirenrope.synth", "--events", str(events), "--users", str(users),
                    "--seed", str(seed), "--out", str(path)], check=True, env=env,
                   capture_output=True)
    return path


def tensor_rows(tensors, i):
    """Row i of a ready-tensors message: (k, v) float32 bytes per block."""
    blocks = (len(tensors) - 1) // 2
    return [(tensors[f"k.{b}"][i].astype("<f4").tobytes(),
             tensors[f"v.{b}"][i].astype("<f4").tobytes()) for b in range(blocks)]


def snapshots_of(messages):
    """The output messages that are snapshots, decoded: [(message, tensors, metadata)]."""
    found = []
    for m in messages:
        tensors, meta = decode(base64.b64decode(m["value_b64"]))
        if meta["rotor.kind"] == "snapshot":
            found.append((m, tensors, meta))
    return found


def delta_rows(messages, snapshots=False):
    """{user: {pos: (k rows, v rows)}} from the output messages, and how often each pos came.
    Snapshots are skipped when `snapshots` is true; otherwise any message but a delta fails."""
    rows, seen = {}, {}
    for m in messages:
        tensors, meta = decode(base64.b64decode(m["value_b64"]))
        if snapshots and meta["rotor.kind"] == "snapshot":
            continue
        check(meta["rotor.kind"] == "delta", f"unexpected {meta['rotor.kind']} message")
        user = meta["rotor.user_id"]
        check(user == m["key"], f"message key {m['key']!r} but user {user!r}")
        for i, pos in enumerate(tensors["pos"].tolist()):
            seen[(user, pos)] = seen.get((user, pos), 0) + 1
            rows.setdefault(user, {})[pos] = tensor_rows(tensors, i)
    return rows, seen


def check_outputs_match(dump, rows, seen, exactly_once):
    """Every position of every user's final window was published (exactly once, if
    exactly_once; no position ever twice then) and the window rebuilt from the deltas has the
    digest of the state. A delta carries at most the window's newest rows, so a position that
    a batch both appended and pushed out of the window is never published: consumers need
    only the window."""
    for user, d in dump.items():
        for pos in range(d["next_pos"] - d["rows"], d["next_pos"]):
            count = seen.get((user, pos), 0)
            check(count >= 1, f"user {user} position {pos} was never published")
    if exactly_once:
        twice = [(key, n) for key, n in seen.items() if n > 1]
        check(not twice, f"positions published more than once: {twice[:5]}")
    for user, d in dump.items():
        data = b"".join(k + v for pos in range(d["next_pos"] - d["rows"], d["next_pos"])
                        for k, v in rows[user][pos])
        check(f"{fnv1a64(data):016x}" == d["digest"],
              f"user {user}: rows rebuilt from the deltas differ from the state")
    check(set(u for u, _ in seen) == set(dump), "outputs for users without state")


def check_same_state(got, want, what):
    check(set(got) == set(want), f"{what}: users differ: {sorted(set(got) ^ set(want))[:5]}")
    for user in want:
        check(got[user] == want[user], f"{what}: user {user}: {got[user]} != {want[user]}")


def case_events(case):
    events = synth(case.work, 1500, 30, 1)
    config = case.config("a")
    case.create_topics(config, 4)
    case.produce(config, events)
    log = case.wait(case.serve(config, idle_ms=4000))
    check("1500 events" in log, f"expected 1500 events in the log:\n{log[-2000:]}")
    want = case.replay(events)
    got = case.dump(config)
    check_same_state(got, want, "daemon vs replay")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(want, rows, seen, exactly_once=False)
    print(f"events: {len(want)} users, {sum(seen.values())} rows published, state exact")


# pipeline.max_message_bytes in Case.config.
MAX_MESSAGE_BYTES = 4096

BAD = [
    ("invalid_json", "{not json"),
    ("invalid_json", "{\"event_id\": \"x0\", \"user_id\": \"u-bad\""),
    ("not_object", "[1, 2, 3]"),
    ("not_object", "\"just a string\""),
    ("missing_field", '{"user_id": "u-bad", "ts_ms": 1767604447477}'),
    ("missing_field", '{"event_id": "x1", "user_id": "u-bad"}'),
    ("wrong_type", '{"event_id": "x2", "user_id": 17, "ts_ms": 1767604447477}'),
    ("wrong_type", '{"event_id": "x3", "user_id": {"id": 1}, "ts_ms": 1767604447477}'),
    ("wrong_type", '{"event_id": "x4", "user_id": "u-bad", "ts_ms": "yesterday"}'),
    ("wrong_type", '{"event_id": "x5", "user_id": "u-bad", "ts_ms": 1.5e12}'),
    ("ts_before_epoch", '{"event_id": "x6", "user_id": "u-bad", "ts_ms": -1000}'),
    ("ts_in_future", '{"event_id": "x7", "user_id": "u-bad", "ts_ms": 4102444800000}'),
    ("invalid_json", '{"event_id": "x8", "user_id": "u-bad", "ts_ms": 1767604447477, '
                     '"item": {"features": [NaN, 0, 0, 0, 0, 0, 0, 0]}}'),
    ("schema", '{"event_id": "x9", "user_id": "u-bad", "ts_ms": 1767604447477, '
               '"item": {"features": [0, 0, 0]}}'),
    ("schema", '{"event_id": "x10", "user_id": "u-bad", "ts_ms": 1767604447477, '
               '"item": {"features": [0, 0, 0, 0, 0, 0, 0, 99999999]}}'),
    ("schema", '{"event_id": "x11", "user_id": "u-bad", "ts_ms": 1767604447477, '
               '"item": {"features": [0, "a", 0, 0, 0, 0, 0, 0]}}'),
    ("schema", '{"event_id": "x12", "user_id": "u-bad", "ts_ms": 1767604447477, '
               '"item": {"features": [0, 0, 0, 0, 0, 0, 0, 0]}, "action": {"click": "yes"}}'),
    ("oversized", '{"event_id": "x13", "user_id": "u-bad", "ts_ms": 1767604447477, "pad": "'
                  + "x" * 5000 + '"}'),
]


def case_bad(case):
    good = synth(case.work, 400, 8, 2).read_text().splitlines()
    # Documented acceptances: an unknown categorical value maps to the reserved row; missing
    # optional parts (action, attrs) take the schema's defaults.
    unknown = json.loads(good[0])
    unknown["attrs"]["topic"] = "never-seen-topic"
    unknown["event_id"] += "-unknown"
    minimal = {"event_id": "min-1", "user_id": json.loads(good[1])["user_id"],
               "ts_ms": json.loads(good[1])["ts_ms"],
               "item": {"features": [0.0] * 8}}
    lines, accepted = [], []
    for i, g in enumerate(good):
        lines.append(g)
        accepted.append(g)
        if i < len(BAD):
            lines.append(BAD[i][1])
    lines += [json.dumps(unknown), json.dumps(minimal)]
    accepted += [json.dumps(unknown), json.dumps(minimal)]
    events = case.work / "mixed.jsonl"
    events.write_text("\n".join(lines) + "\n")
    accepted_file = case.work / "accepted.jsonl"
    accepted_file.write_text("\n".join(accepted) + "\n")

    config = case.config("a")
    case.create_topics(config, 3)
    case.produce(config, events)
    case.wait(case.serve(config, idle_ms=4000))
    dead = case.consume(config, case.topics["dlq"])
    by_value = {}
    for m in dead:
        by_value.setdefault(base64.b64decode(m["value_b64"]), []).append(m)
    for reason, value in BAD:
        raw = value.encode()
        # A dead letter keeps at most pipeline.max_message_bytes (MAX_MESSAGE_BYTES) of the value; a
        # cut one says how long the original was.
        kept = raw[:MAX_MESSAGE_BYTES]
        got = by_value.get(kept)
        check(got, f"bad input ({reason}) {value[:60]!r} not in the dead-letter topic"
                   + (f" (cut to its first {MAX_MESSAGE_BYTES} bytes)" if len(raw) > MAX_MESSAGE_BYTES else ""))
        headers = got[0]["headers"]
        check(headers.get("rotor.source.value_bytes") == (str(len(raw)) if len(raw) > MAX_MESSAGE_BYTES
                                                          else None),
              f"{value[:60]!r}: rotor.source.value_bytes {headers.get('rotor.source.value_bytes')}"
              f" for a {len(raw)}-byte value")
        check(headers.get("rotor.error") == reason,
              f"{value[:60]!r}: reason {headers.get('rotor.error')!r}, want {reason!r} "
              f"({headers.get('rotor.error.detail')})")
        check(headers.get("rotor.source.topic") == case.topics["input"], "source topic header")
        check(int(headers["rotor.source.offset"]) >= 0, "source offset header")
        check(headers.get("rotor.error.detail"), "empty detail")
    check(len(dead) == len(BAD), f"{len(dead)} dead letters, want {len(BAD)}")
    check_same_state(case.dump(config), case.replay(accepted_file), "daemon vs replay of good")
    print(f"bad: {len(BAD)} bad inputs dead-lettered with their reasons; state exact")


def freeze_broker(broker_name, seconds):
    """Stops the broker process (SIGSTOP) for `seconds`: it answers nothing, connections stay
    open, so clients see timeouts rather than refusals; then lets it go on."""
    pid = broker.running_pid(broker.state_dir(broker_name))
    check(pid is not None, f"broker '{broker_name}' is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def case_restart(case):
    events = synth(case.work, 3000, 40, 3)
    config = case.config("a", batch=32)
    case.create_topics(config, 4)
    first = case.serve(config)
    wait_for(lambda: "assigned" in first.log.read_text(), 60, "the first assignment")
    # The events arrive at 600/s while the daemon runs; it dies about halfway.
    producer = subprocess.Popen([case.rotor, "produce", "--config", str(config), "--file",
                                 str(events), "--rate", "600"], stdout=subprocess.DEVNULL)
    time.sleep(2.5)
    first.kill()  # SIGKILL, mid-stream.
    first.wait()
    check(producer.wait(timeout=120) == 0, "rotor produce failed")
    partial = case.dump(config)
    done = sum(d["next_pos"] for d in partial.values())
    # Without the log the state rolls back to its last flush, possibly to nothing.
    check((0 < done or not case.wal) and done < 3000,
          f"kill point not mid-stream: {done} events in state")
    case.wait(case.serve(config, idle_ms=4000))
    check_same_state(case.dump(config), case.replay(events), "restarted daemon vs replay")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(case.dump(config), rows, seen, exactly_once=False)
    print(f"restart: killed after {done}/3000 events; final state exact")


def case_eos(case, kills):
    events = synth(case.work, 3000, 40, 4)
    config = case.config("a", mode="exactly_once", batch=32)
    case.create_topics(config, 4)
    case.produce(config, events)
    rng = random.Random(4)
    for i in range(kills):
        proc = case.serve(config, name=f"kill{i}")
        time.sleep(rng.uniform(1.0, 6.0))
        proc.kill()
        proc.wait()
    progress = sum(d["next_pos"] for d in case.dump(config).values())
    log = case.wait(case.serve(config, idle_ms=5000, name="final"))
    want = case.replay(events)
    check_same_state(case.dump(config), want, "exactly-once daemon vs replay")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(want, rows, seen, exactly_once=True)
    reapplied = sum("re-applied to state" in p.read_text() for p in case.logs)
    print(f"eos: {kills} kill -9 points ({progress}/3000 events before the final run, "
          f"{reapplied} restarts re-applied committed outputs); every row published once")
    del log


def case_stall(case, broker_name):
    """The broker stops answering (SIGSTOP) for longer than the daemon's produce request
    timeout while the daemon works through a backlog: its produce requests time out with their
    messages possibly written, and the idempotent producer must resend them without losing or
    reordering any (the path a mock cluster cannot show). The final state and outputs must be
    exact."""
    events = synth(case.work, 6000, 40, 6)
    kafka_extra = "\n".join([
        "  producer_properties:",
        "    socket.timeout.ms: \"1500\"",
        "    debug: broker",
        "    reconnect.backoff.max.ms: \"500\"",
        "  consumer_properties:",
        "    reconnect.backoff.max.ms: \"500\""])
    config = case.config("a", batch=32, kafka_extra=kafka_extra, log_level="debug",
                         stats_interval_ms=100)
    case.create_topics(config, 4)
    case.produce(config, events)
    daemon = case.serve(config, idle_ms=8000)
    # Frozen once batches are being produced (a stats line counts events), not merely after
    # the assignment: a freeze during the first fetch left no produce request to time out.
    wait_processing(daemon)
    freeze_broker(broker_name, 4)
    log = case.wait(daemon)
    done = re.findall(r"(\d+) events \(", log)  # The last stats line: the final count.
    check(done and int(done[-1]) == 6000, "the daemon did not apply all 6000 events")
    timeouts = len(re.findall(r"Timed out \d+ in-flight", log))
    check(timeouts > 0, "no produce request timed out during the stall: the case tested "
                        "nothing (the backlog was done before the broker stopped?)")
    check_same_state(case.dump(config), case.replay(events), "daemon after a broker stall")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(case.dump(config), rows, seen, exactly_once=False)
    print(f"stall: broker stopped for 4 s mid-backlog, {timeouts} produce requests timed out "
          f"and were resent; final state and outputs exact")


def assigned_partitions(text):
    """The partitions an instance owned, up to its shutdown (which revokes everything)."""
    owned = set()
    for line in text.splitlines():
        if "stopping" in line:
            break
        m = re.search(r"partition (\d+): (assigned|revoked|lost)", line)
        if m:
            (owned.add if m.group(2) == "assigned" else owned.discard)(int(m.group(1)))
    return owned


def case_scaleout(case):
    events = synth(case.work, 3000, 40, 5)
    lines = events.read_text().splitlines()
    first, second = case.work / "first.jsonl", case.work / "second.jsonl"
    first.write_text("\n".join(lines[:1500]) + "\n")
    second.write_text("\n".join(lines[1500:]) + "\n")
    config_a, config_b = case.config("a"), case.config("b")
    case.create_topics(config_a, 6)
    a = case.serve(config_a, name="a")
    b = case.serve(config_b, idle_ms=20000, name="b")
    case.produce(config_a, first)
    wait_for(lambda: assigned_partitions(a.log.read_text())
             and assigned_partitions(b.log.read_text())
             and len(assigned_partitions(a.log.read_text())
                     | assigned_partitions(b.log.read_text())) == 6,
             90, "both instances to own partitions")
    split = (sorted(assigned_partitions(a.log.read_text())),
             sorted(assigned_partitions(b.log.read_text())))
    check(not set(split[0]) & set(split[1]), f"partitions owned twice: {split}")
    time.sleep(3)
    a.send_signal(signal.SIGTERM)
    case.wait(a)
    case.produce(config_a, second)
    log_b = case.wait(b)
    check(assigned_partitions(log_b) == set(range(6)),
          f"b owns {sorted(assigned_partitions(log_b))} after a stopped")
    check_same_state(case.dump(config_b), case.replay(events), "surviving instance vs replay")
    rows, seen = delta_rows(case.consume(config_a, case.topics["output"]))
    check_outputs_match(case.dump(config_b), rows, seen, exactly_once=False)
    print(f"scaleout: split a={split[0]} b={split[1]}; b took over all 6; state exact")


def wait_assigned(proc, timeout=60):
    """Waits until `proc` was assigned partitions (and is still running)."""
    wait_for(lambda: "assigned" in proc.text() or proc.poll() is not None, timeout,
             f"an assignment in {proc.log.name}")
    check(proc.poll() is None, f"rotor serve exited {proc.returncode} before its assignment:\n"
                               f"{proc.text()[-3000:]}")


def wait_processing(proc, timeout=60):
    """Waits until `proc` has processed input (a stats line, log.stats_interval_ms > 0, counts
    events), so that a kill soon after finds batches in flight and others committed."""
    def busy():
        counts = re.findall(r"\] (\d+) events \(", proc.text())
        return (counts and int(counts[-1]) > 0) or proc.poll() is not None
    wait_for(busy, timeout, f"input processed in {proc.log.name}")
    check(proc.poll() is None, f"rotor serve exited {proc.returncode}:\n{proc.text()[-3000:]}")


def case_eos_failpoints(case):
    """Exactly-once with the kills where they matter: input keeps arriving (rotor produce
    --rate in the background) while the daemon is killed at each commit edge (failpoints) and
    at random points. Every failpoint run must die at its failpoint, every run must leave more
    events in the state than the one before, and the run after a kill between the Kafka commit
    and the RocksDB commit must re-apply records without publishing them. At the end the state
    equals the replay and every delta row appears exactly once under read_committed."""
    with open(case.rotor, "rb") as binary:
        if b"txn.after_commit" not in binary.read():
            raise Skip(f"{case.rotor} has no failpoints (a build without ROTOR_FAILPOINTS)")
    events = synth(case.work, 6000, 40, 7)
    config = case.config("a", mode="exactly_once", batch=32, stats_interval_ms=250)
    config_b = case.config("b", mode="exactly_once", batch=32)
    case.create_topics(config, 4)
    # 48 events/s for as long as the kills take (about 65 s here: 3000 events), the rest
    # at once before the final run.
    feeder = Feeder(case, config, events, rate=48)
    rng = random.Random(7)
    applied = [0]
    steps = []

    def progressed(what):
        now = case.applied(config)
        check(now > applied[-1], f"{what}: no progress: {now} events in the state, "
                                 f"{applied[-1]} before the run")
        applied.append(now)
        steps.append(f"{what} -> {now}")

    def random_kill(tag):
        proc = case.serve(config, name=tag)
        wait_assigned(proc)
        wait_processing(proc)
        time.sleep(rng.uniform(0.5, 2.5))
        proc.kill()
        proc.wait()
        progressed(f"{tag} (SIGKILL)")
        return proc

    def failpoint_run(point, nth):
        feeder.flowing(f"the run killed at {point}")  # Its kill needs batches.
        proc = case.serve(config, name=point, failpoint=f"{point}:{nth}")
        case.killed_at(proc, point, timeout=60)
        progressed(f"{point}:{nth}")
        return proc

    random_kill("random0")
    # Kafka committed the transaction (outputs and offsets), RocksDB not the state: the next
    # run must re-apply those records without publishing them again.
    failpoint_run("txn.after_commit", 4)
    after = random_kill("random1")
    check("re-applied to state without publishing" in after.text(),
          f"the run after a kill at txn.after_commit re-applied nothing:\n{after.text()[-3000:]}")
    failpoint_run("store.before_commit", 6)
    failpoint_run("store.after_commit", 6)
    random_kill("random2")
    # A revoke at shutdown: SIGTERM closes the consumer, which revokes everything after
    # draining what is in flight.
    proc = case.serve(config, name="revoke-close", failpoint="rebalance.revoke_after_drain")
    wait_assigned(proc)
    wait_processing(proc)
    time.sleep(rng.uniform(0.5, 2.0))
    proc.send_signal(signal.SIGTERM)
    case.killed_at(proc, "rebalance.revoke_after_drain", timeout=60)
    progressed("rebalance.revoke_after_drain (SIGTERM)")
    # A revoke in a rebalance: a second instance (its own state) joins; the first drains what
    # is in flight and dies before giving its partitions up. The second takes them over from
    # the group's offsets, and the rest once the first's session expired.
    a = case.serve(config, name="revoke-join", failpoint="rebalance.revoke_after_drain")
    wait_assigned(a)
    wait_processing(a)
    time.sleep(rng.uniform(0.5, 2.0))
    b = case.serve(config_b, name="b")
    case.killed_at(a, "rebalance.revoke_after_drain", timeout=60)
    progressed("rebalance.revoke_after_drain (a second instance joined)")
    wait_for(lambda: len(assigned_partitions(b.text())) == 4 or b.poll() is not None, 60,
             "the second instance to own every partition")
    check(b.poll() is None, f"the second instance exited:\n{b.text()[-3000:]}")
    time.sleep(2.0)
    # It must have published (and committed offsets) beyond the first instance's state.
    feeder.flowing("the second instance's takeover ended")
    b.send_signal(signal.SIGTERM)  # It leaves the group, which is empty then.
    case.wait(b)
    # The first instance comes back alone, so its first assignment holds every partition, with
    # the group's offsets (the second's) ahead of its state: it dies after reading them, before
    # the assignment takes effect.
    proc = case.serve(config, name="assign", failpoint="rebalance.before_assign:1")
    case.killed_at(proc, "rebalance.before_assign", timeout=60)
    check("re-applied to state without publishing" in proc.text(),
          f"the partitions came back without offsets ahead of the state:\n{proc.text()[-3000:]}")
    steps.append("rebalance.before_assign:1 (after the second instance left)")
    after = random_kill("random3")
    check("re-applied to state without publishing" in after.text(),
          f"the run after the takeover re-applied nothing:\n{after.text()[-3000:]}")
    at_rate = feeder.finish()
    before_final = applied[-1]
    log = case.wait(case.serve(config, idle_ms=5000, name="final"))
    check("stopped:" not in log, f"a partition stopped:\n{log[-3000:]}")
    case.check_input(config, events)
    want = case.replay(events)
    check_same_state(case.dump(config), want, "exactly-once daemon vs replay")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(want, rows, seen, exactly_once=True)
    for step in steps:
        print(f"  {step}")
    print(f"eos_failpoints: {len(steps)} kills while producing ({at_rate} events at 48/s, "
          f"{before_final} in the state before the final run, 6000 in all); every row "
          f"published once, state exact")


def case_zombie(case):
    """Zombie fencing: two exactly-once instances in one group (each with its own state and
    transactional id). One is frozen (SIGSTOP) with a transaction open, past its session
    timeout, while input flows; the other takes its partitions over. Thawed (SIGCONT), the
    zombie tries to go on with its transaction and must fail to commit it (the group's
    generation moved on), abort it and give the partitions up, or stop. No delta row may
    appear twice under read_committed, and the instance owning every partition at the end
    holds the replayed state of every user.

    When the freeze lands inside the zombie's commit (its offsets sent to the transaction, the
    commit not yet done), the group's offsets of those partitions are unstable and the live
    instance's assignment waits until the transaction coordinator aborts the transaction on
    its timeout (20 s), which also fences the zombie's producer: it then stops (exit 1)."""
    events = synth(case.work, 5000, 40, 8)
    # Transactions stay open 2 s (so the zombie is frozen inside one); their timeout is beyond
    # the usual freeze (about 10 s), so it is mostly the group's generation that fences the
    # zombie, not the transaction coordinator aborting its transaction.
    options = dict(mode="exactly_once", batch=32, commit_interval_ms=2000,
                   transaction_timeout_ms=20000)
    config_a, config_b = case.config("a", **options), case.config("b", **options)
    case.create_topics(config_a, 4)
    a = case.serve(config_a, name="a")
    wait_assigned(a)
    # No --exit-when-idle-ms: an assignment that waits for unstable offsets can make it stop
    # right after taking the partitions (the idle clock starts when the wait begins).
    b = case.serve(config_b, name="b")
    feeder = Feeder(case, config_a, events, rate=100)
    wait_for(lambda: assigned_partitions(a.text()) and assigned_partitions(b.text())
             and len(assigned_partitions(a.text()) | assigned_partitions(b.text())) == 4,
             60, "both instances to own partitions")
    owned_a = assigned_partitions(a.text())
    time.sleep(2.5)
    check(a.poll() is None and b.poll() is None, "an instance exited before the freeze")
    frozen = len(a.text())
    os.kill(a.pid, signal.SIGSTOP)
    try:
        froze = time.monotonic()
        wait_for(lambda: len(assigned_partitions(b.text())) == 4 or b.poll() is not None, 60,
                 "the live instance to take the frozen one's partitions")
        check(b.poll() is None, f"the live instance exited:\n{b.text()[-3000:]}")
        took = time.monotonic() - froze
        time.sleep(2.0)  # It publishes for them.
        feeder.flowing("the zombie was thawed")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # Thawed, the zombie must find out: its transaction fails (and is aborted) or its
    # partitions are lost, or it stops.
    zombie = re.compile(r"aborting the transaction|partition \d+: lost|fenced|fatal")
    wait_for(lambda: zombie.search(a.text()[frozen:]) or a.poll() is not None, 60,
             "the zombie to notice it was fenced")
    feeder.finish()
    if a.poll() is None:
        a.send_signal(signal.SIGTERM)
        log_a = case.wait(a)
        how = "rejoined and stopped cleanly"
    else:
        log_a = a.text()
        check(a.returncode == 1 and ("fenced" in log_a or "fatal" in log_a),
              f"the zombie exited {a.returncode}, not with a fencing error:\n{log_a[-3000:]}")
        how = "stopped on the fencing error"
    after = log_a[frozen:]
    check("failpoint" not in after and "AddressSanitizer" not in after,
          f"the zombie crashed:\n{after[-3000:]}")
    fenced = [line for line in after.splitlines() if zombie.search(line)]
    b.send_signal(signal.SIGTERM)
    case.wait(b)
    # The live instance alone, until it has applied everything.
    log_b = case.wait(case.serve(config_b, idle_ms=4000, name="b-final"))
    check(assigned_partitions(log_b) == set(range(4)),
          f"b owns {sorted(assigned_partitions(log_b))} at the end")
    case.check_input(config_a, events)
    want = case.replay(events)
    got = case.dump(config_b)
    check_same_state(got, want, "the instance owning every partition vs replay")
    rows, seen = delta_rows(case.consume(config_a, case.topics["output"]))
    check_outputs_match(want, rows, seen, exactly_once=True)
    for line in fenced[:4]:
        print(f"  zombie: {line}")
    print(f"zombie: a owned {sorted(owned_a)}, frozen {took:.1f} s until b owned all 4; the "
          f"zombie {how}; no row twice under read_committed, state exact")


def case_snapshots(case):
    """Snapshots on the real broker: with output.snapshot_interval_ms = 200 and the input
    arriving over a few seconds, the daemon publishes whole windows besides the deltas. Every
    snapshot decodes, says it is a snapshot of its key's user, holds the window's consecutive
    positions ending at its next_pos - 1 (min(next_pos, W) of them), and its rows equal that
    user's rows at the same positions in the deltas; a snapshot at the final position equals the
    replayed state. Every user whose events arrive more than 2 s apart has a snapshot."""
    rate = 300
    events = synth(case.work, 1500, 30, 9)
    config = case.config("a", batch=32, snapshot_interval_ms=200)
    case.create_topics(config, 4)
    daemon = case.serve(config, idle_ms=4000)
    wait_assigned(daemon)
    case.finish_producer(case.producer(config, events, rate=rate))
    log = case.wait(daemon)
    case.check_input(config, events)
    want = case.replay(events)
    check_same_state(case.dump(config), want, "daemon vs replay")
    messages = case.consume(config, case.topics["output"])
    rows, seen = delta_rows(messages, snapshots=True)
    check_outputs_match(want, rows, seen, exactly_once=False)
    window = max(d["rows"] for d in want.values())
    check(any(d["next_pos"] > d["rows"] for d in want.values()),
          "no user filled its window: the snapshots' length is not checked")
    snaps = snapshots_of(messages)
    per_user, at_end = {}, 0
    for m, tensors, meta in snaps:
        user = meta["rotor.user_id"]
        what = f"snapshot of {user} at partition {m['partition']} offset {m['offset']}"
        check(m["key"] == user, f"{what}: message key {m['key']!r}")
        check(meta.get("rotor.format") == "rotor-ready-tensors/1", f"{what}: format {meta}")
        check(user in want, f"{what}: a user without state")
        next_pos = int(meta["rotor.next_pos"])
        pos = tensors["pos"].tolist()
        check(pos == list(range(next_pos - len(pos), next_pos)),
              f"{what}: positions {pos} do not end at next_pos {next_pos} - 1")
        check(len(pos) == min(next_pos, window),
              f"{what}: {len(pos)} rows, want min(next_pos {next_pos}, window {window})")
        for i, p in enumerate(pos):
            check(p in rows[user], f"{what}: position {p} was in no delta")
            check(tensor_rows(tensors, i) == rows[user][p],
                  f"{what}: position {p} differs from the delta's row")
        if next_pos == want[user]["next_pos"]:
            data = b"".join(k + v for i in range(len(pos)) for k, v in tensor_rows(tensors, i))
            check(f"{fnv1a64(data):016x}" == want[user]["digest"],
                  f"{what}: the final window differs from the replayed state")
            at_end += 1
        per_user[user] = per_user.get(user, 0) + 1
    arrivals = {}
    for i, line in enumerate(events.read_text().splitlines()):
        arrivals.setdefault(json.loads(line)["user_id"], []).append(i / rate)
    spread = sorted(u for u, t in arrivals.items() if t[-1] - t[0] > 2.0)
    missing = [u for u in spread if u not in per_user]
    check(spread, "no user's events arrive more than 2 s apart: nothing to snapshot")
    check(not missing, f"users with events more than 2 s apart but no snapshot: {missing}")
    count = re.search(r"(\d+) snapshots published", log)
    check(count and int(count.group(1)) == len(snaps),
          f"the daemon counted {count and count.group(1)} snapshots, the topic holds "
          f"{len(snaps)}")
    print(f"snapshots: {len(snaps)} snapshots of {len(per_user)}/{len(want)} users (window "
          f"{window}), all decoded and equal to the deltas' rows; {at_end} at the final "
          f"position equal the replayed state")


def case_outage(case, broker_name, mode):
    """A broker outage longer than message.timeout.ms (3 s) on the real broker: the broker is
    stopped (SIGSTOP) for 6 s while the daemon works through a backlog. Queued and in-flight
    outputs time out, the daemon drops the batches that were not delivered and redoes them from
    the stored offsets once the broker is back. The state equals the replay, every position of
    the final windows was published (exactly once in exactly-once mode, under read_committed)
    and the rows rebuilt from the deltas equal the state. The session timeout is longer than
    the outage, so the group does not rebalance meanwhile."""
    events = synth(case.work, 6000, 40, 10)
    kafka_extra = "\n".join([
        "  producer_properties:",
        "    message.timeout.ms: \"3000\"",
        "    socket.timeout.ms: \"1500\"",
        "    reconnect.backoff.max.ms: \"500\"",
        "  consumer_properties:",
        "    reconnect.backoff.max.ms: \"500\""])
    config = case.config("a", mode=mode, batch=32, kafka_extra=kafka_extra,
                         session_timeout_ms=30000, stats_interval_ms=200)
    case.create_topics(config, 4)
    case.produce(config, events)
    daemon = case.serve(config, idle_ms=8000)
    # Frozen only once the daemon holds fetched input and is working through it: a fixed
    # sleep after the assignment sometimes froze the broker before the first fetch answered,
    # so nothing was in flight to time out.
    wait_processing(daemon)
    counts = re.findall(r"\] (\d+) events \(", daemon.text())
    check(int(counts[-1]) < 6000 * 3 // 4,
          f"the daemon had done {counts[-1]} of 6000 events before the broker stopped")
    freeze_broker(broker_name, 6)
    log = case.wait(daemon)
    redone = re.findall(r"(\d+) batch\(es\) of (\d+) records not delivered \((.*)\); "
                        r"retrying from the stored offsets", log)
    check(redone, "no batch was redone from the stored offsets: the outputs did not time out "
                  f"(the backlog was done before the broker stopped?):\n{log[-3000:]}")
    want = case.replay(events)
    check_same_state(case.dump(config), want, f"{mode} daemon after a broker outage vs replay")
    rows, seen = delta_rows(case.consume(config, case.topics["output"]))
    check_outputs_match(want, rows, seen, exactly_once=mode == "exactly_once")
    batches = sum(int(n) for n, _, _ in redone)
    print(f"outage ({mode}): broker stopped 6 s > message.timeout.ms 3 s; {len(redone)} "
          f"redo(s) of {batches} batch(es) ({redone[0][2][:140]}); state and outputs exact")


def delete_input_records(case, broker_name, partitions):
    """Deletes every record of the input topic (DeleteRecords up to the log end), as retention
    would, through Kafka's own DeleteRecordsCommand."""
    spec = case.work / "delete-records.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": case.topics["input"], "partition": p, "offset": -1}
        for p in range(partitions)]}))
    done = subprocess.run(
        [str(ROOT / "tools" / "kafka" / "broker.sh"), "tool", "--name", broker_name,
         "org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", "{bootstrap}",
         "--offset-json-file", str(spec)], capture_output=True, text=True, timeout=120)
    check(done.returncode == 0, f"DeleteRecordsCommand exited {done.returncode}:\n"
                                f"{done.stdout}{done.stderr}")


ZOMBIE = r"""
import os, sys
from confluent_kafka import Producer
bootstrap, topic, partitions, timeout_ms, tid = sys.argv[1:]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
              "transaction.timeout.ms": int(timeout_ms)})
p.init_transactions(30)
p.begin_transaction()
for partition in range(int(partitions)):
    p.produce(topic, key=b"zombie", value=b"never committed", partition=partition)
p.flush(30)
print("open", flush=True)
os._exit(0)  # Killed inside the transaction: the broker aborts it on its timeout.
"""


def open_zombie_transaction(case, topic, partitions, timeout_ms):
    """A producer that writes one record to every partition of `topic` inside a transaction
    and dies without ending it, as an owner killed with -9 mid-transaction does: the
    partitions' last stable offset stays before that record until the broker aborts it,
    `timeout_ms` later."""
    done = subprocess.run(
        [sys.executable, "-c", ZOMBIE, case.bootstrap, topic, str(partitions), str(timeout_ms),
         f"{case.group}-zombie"], capture_output=True, text=True, timeout=120)
    check(done.returncode == 0 and "open" in done.stdout,
          f"the zombie producer exited {done.returncode}:\n{done.stdout}{done.stderr}")


def unstable_partitions(case, topic, partitions):
    """The partitions of `topic` whose last stable offset is below their end (an open
    transaction), with both offsets."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415 (only these cases)
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": case.bootstrap, "group.id": f"{case.group}-probe",
                      "isolation.level": isolation, "enable.auto.commit": False})
        try:
            ends[isolation] = [c.get_watermark_offsets(TopicPartition(topic, p), 30)[1]
                               for p in range(partitions)]
        finally:
            c.close()
    return {p: (stable, end) for p, (stable, end) in
            enumerate(zip(ends["read_committed"], ends["read_uncommitted"])) if stable < end}


def case_changelog(case, broker_name):
    """A new instance restores from the state changelog, even once the input is gone, and
    even while a killed producer's transaction is still open on the changelog."""
    events = synth(case.work, 3000, 40, 31).read_text().splitlines(keepends=True)
    early, middle, late, every = (case.work / name for name in (
        "early.jsonl", "middle.jsonl", "late.jsonl", "all.jsonl"))
    early.write_text("".join(events[:1600]))
    middle.write_text("".join(events[1600:2000]))
    late.write_text("".join(events[2000:]))
    every.write_text("".join(events))
    first = case.config("first", mode="exactly_once")
    case.create_topics(first, 6)
    case.produce(first, early)
    case.wait(case.serve(first, idle_ms=3000))

    # A previous owner killed inside a transaction leaves it open on the changelog until the
    # broker aborts it; what the first instance commits next lies after it, unreadable under
    # read_committed until then. A restore must wait for it rather than end at the older state.
    changelog = f"{case.group}.changelog"
    open_zombie_transaction(case, changelog, 6, timeout_ms=25000)
    case.produce(first, middle)
    case.wait(case.serve(first, idle_ms=3000, name="first-more"))
    want = case.dump(first)
    hidden = unstable_partitions(case, changelog, 6)
    check(len(hidden) == 6, f"the zombie's transaction should hold every changelog partition's "
                            f"stable offset back (stable, end): {hidden}")

    # Retention (here DeleteRecords) takes every input record the first instance applied.
    delete_input_records(case, broker_name, 6)

    # A new instance restores every partition, applies nothing from the input, and holds the
    # first one's state user for user.
    second = case.config("second", mode="exactly_once")
    log = case.wait(case.serve(second, idle_ms=3000, name="second"))
    restored = re.findall(r"partition (\d+): restored from .* resuming at offset (\d+)", log)
    check(len(restored) == 6, f"expected 6 partitions restored:\n{log[-2500:]}")
    check("an open transaction holds offsets" in log,
          f"the restore did not wait for the open transaction:\n{log[-2500:]}")
    check(re.search(r"\b0 events \(", log), f"the restore re-applied input:\n{log[-2500:]}")
    check_same_state(case.dump(second), want, "restored vs the first instance")

    # Without a changelog a new instance cannot rebuild: every partition stops.
    bare = case.config("bare", mode="exactly_once", changelog=False)
    log = case.wait(case.serve(bare, idle_ms=3000, name="bare"))
    check(log.count("stopped: ") >= 6 and "were deleted" in log,
          f"without a changelog the partitions should stop:\n{log[-2500:]}")

    # It goes on with new input: the final state is what one uninterrupted run gives, and under
    # read_committed every row of both instances' outputs appears exactly once.
    case.produce(second, late)
    case.wait(case.serve(second, idle_ms=3000, name="second-more"))
    final = case.dump(second)
    check_same_state(final, case.replay(every), "restored and continued vs replay")
    rows, seen = delta_rows(case.consume(second, case.topics["output"]))
    check_outputs_match(final, rows, seen, exactly_once=True)

    # The first instance comes back with its old state, behind the group by the late events,
    # and retention took those too: rather than stop, it drops each such partition's local
    # state and restores it from the changelog, applying nothing of the input.
    delete_input_records(case, broker_name, 6)
    log = case.wait(case.serve(first, idle_ms=3000, name="first-back"))
    dropped = re.findall(r"partition (\d+): the local state ends at offset", log)
    restored = re.findall(r"partition (\d+): restored from", log)
    check(len(dropped) == 6 and sorted(restored) == sorted(dropped),
          f"expected 6 stale partitions dropped and restored, got {dropped} and {restored}:\n"
          f"{log[-2500:]}")
    check("stopped: " not in log and re.search(r"\b0 events \(", log),
          f"the stale instance stopped or applied input:\n{log[-2500:]}")
    check_same_state(case.dump(first), final, "stale state restored vs the second instance")
    print(f"changelog: {len(final)} users; 6 partitions restored with the input deleted and a "
          f"zombie transaction open, then over a stale state; {sum(seen.values())} rows "
          f"published once each")


def partition_timeline(case):
    """Every instance's assignments, restores, revokes and aborted transactions, log by log: what
    a failure of a multi-instance case needs to be read."""
    pattern = re.compile(r"partition \d+: (assigned|restored|revoked|lost|stopped)|abort|retrying|"
                         r"not delivered|fenced")
    out = []
    for log in case.logs:
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if pattern.search(line)]
        out.append(f"---- {log.name}: {len(lines)} line(s)")
        out.extend(line[:300] for line in lines[-60:])
    return "\n".join(out)


def case_three(case):
    """Three exactly-once instances share 6 partitions while input flows; one is killed with
    -9, another joins later with an empty state directory (restoring what it gets from the
    changelog). A fifth instance started afterwards restores all 6 partitions from the
    changelog alone: its state must equal one uninterrupted run's, user for user, and every
    output row must appear exactly once under read_committed."""
    events = synth(case.work, 9000, 48, 41)
    # A short transaction timeout: the survivors wait for b's open transaction to be aborted
    # before they can read the group's offsets of its partitions.
    configs = {name: case.config(name, mode="exactly_once", batch=32, stats_interval_ms=500,
                                 transaction_timeout_ms=10000)
               for name in ("a", "b", "c", "d", "check")}
    case.create_topics(configs["a"], 6)
    feeder = Feeder(case, configs["a"], events, rate=150)
    # Each exits once no input came for 6 s (after the feeder is done).
    procs = {name: case.serve(configs[name], idle_ms=6000, name=name) for name in ("a", "b", "c")}
    wait_for(lambda: len(set().union(*(assigned_partitions(p.text())
                                       for p in procs.values()))) == 6
             and all(assigned_partitions(p.text()) for p in procs.values()),
             90, "three instances to own partitions")
    for proc in procs.values():
        wait_processing(proc)
    feeder.flowing("the kill")
    procs["b"].kill()  # kill -9: no drain, no leave; its open transaction is aborted later.
    procs["b"].wait()
    wait_for(lambda: len(assigned_partitions(procs["a"].text())
                         | assigned_partitions(procs["c"].text())) == 6, 90,
             "the survivors to take over b's partitions")
    feeder.flowing("the new instance")
    procs["d"] = case.serve(configs["d"], idle_ms=6000, name="d")
    wait_assigned(procs["d"])
    feeder.finish()
    for name in ("a", "c", "d"):
        case.wait(procs[name])
    restored_by_d = re.findall(r"partition \d+: restored from", procs["d"].text())
    check(restored_by_d, f"d restored nothing from the changelog:\n{procs['d'].text()[-2500:]}")

    # The changelog alone rebuilds every partition exactly.
    log = case.wait(case.serve(configs["check"], idle_ms=3000, name="check"))
    restored = re.findall(r"partition (\d+): restored from", log)
    check(sorted(map(int, restored)) == list(range(6)), f"check restored {restored}:\n"
                                                         f"{log[-2500:]}")
    check(re.search(r"\b0 events \(", log),
          f"check applied input:\n{log[-2500:]}\n{partition_timeline(case)}")
    final = case.dump(configs["check"])
    check_same_state(final, case.replay(events), "restored after the kill and the join vs replay")
    rows, seen = delta_rows(case.consume(configs["a"], case.topics["output"]))
    check_outputs_match(final, rows, seen, exactly_once=True)
    print(f"three: b killed, d joined and restored {len(restored_by_d)} partitions; a fresh "
          f"instance restored all 6 from the changelog; {len(final)} users exact; "
          f"{sum(seen.values())} rows, each once")


def case_standby(case):
    """Standby replicas: two exactly-once instances with kafka.standby_replicas: 1 share 6
    partitions while input flows, each keeping a caught-up copy of the other's partitions by
    tailing the changelog. One is killed with -9: the survivor takes its partitions over from
    the copies, re-applying only the input since each copy's last marker (restoring nothing
    from the changelog). Its final state equals one uninterrupted run's, and every output row
    appears exactly once under read_committed."""
    events = synth(case.work, 6000, 48, 43)
    configs = {name: case.config(name, mode="exactly_once", batch=32, stats_interval_ms=500,
                                 transaction_timeout_ms=10000,
                                 kafka_extra="  standby_replicas: 1\n  standby_refresh_ms: 1000")
               for name in ("a", "b")}
    case.create_topics(configs["a"], 6)
    feeder = Feeder(case, configs["a"], events, rate=150)
    procs = {name: case.serve(configs[name], idle_ms=6000, name=name) for name in ("a", "b")}
    wait_for(lambda: len(assigned_partitions(procs["a"].text())
                         | assigned_partitions(procs["b"].text())) == 6
             and all(assigned_partitions(p.text()) for p in procs.values()),
             90, "two instances to own partitions")
    for proc in procs.values():
        wait_processing(proc)

    def caught_up():
        owned_by_a = assigned_partitions(procs["a"].text())
        copies = set(map(int, re.findall(r"partition (\d+): standby copy caught up",
                                         procs["b"].text())))
        return owned_by_a and owned_by_a <= copies
    wait_for(caught_up, 90, "b's copies of a's partitions to catch up")
    feeder.flowing("the kill")
    taken = assigned_partitions(procs["a"].text())
    procs["a"].kill()  # kill -9 inside a transaction: b's takeover waits for its abort.
    procs["a"].wait()
    wait_for(lambda: len(assigned_partitions(procs["b"].text())) == 6, 120,
             "b to take over a's partitions")
    feeder.finish()
    log = case.wait(procs["b"])
    gaps = {}
    for p in taken:
        # b never owned it before: state for it in b's store is its copy's.
        check(f"partition {p}: restored from" not in log,
              f"partition {p} was restored from the changelog, not taken from its copy:\n"
              f"{log[-3000:]}")
        # The copy ends handed over on the assignment, or stopped just before it when the
        # standby's group refresh saw the owner gone first (resumable from its position): the
        # takeover resumes from the copy's position either way.
        handed = re.findall(rf"partition {p}: standby copy (?:handed over|stopped) at input "
                            rf"offset (\d+)", log)
        resumed = re.findall(rf"partition {p}: assigned, resuming at (\d+)(?: from the state "
                             rf"store; offsets below (\d+))?", log)
        check(len(resumed) == 1 and handed and int(resumed[0][0]) == int(handed[-1]) > 0,
              f"partition {p}: not taken over from its copy (handed over {handed}, resumed "
              f"{resumed}):\n{log[-3000:]}")
        start, published = resumed[0]
        gaps[p] = int(published or start) - int(start)
    final = case.dump(configs["b"])
    check_same_state(final, case.replay(events), "taken over from standby copies vs replay")
    rows, seen = delta_rows(case.consume(configs["b"], case.topics["output"]))
    check_outputs_match(final, rows, seen, exactly_once=True)
    print(f"standby: a killed, b took over {sorted(taken)} from its copies, re-applying "
          f"{gaps} input records per partition; {len(final)} users exact; "
          f"{sum(seen.values())} rows, each once")


def case_replay(case):
    """`rotor replay --kafka` against what `rotor serve` built from the same topic."""
    events = synth(case.work, 4500, 40, 21).read_text().splitlines(keepends=True)
    early, late = case.work / "early.jsonl", case.work / "late.jsonl"
    early.write_text("".join(events[:3000]))
    late.write_text("".join(events[3000:]))
    served = case.config("served", mode="exactly_once")
    case.create_topics(served, 6)
    case.produce(served, early)
    time.sleep(1.0)
    late_from_ms = int(time.time() * 1000)  # Kafka timestamps: when each record was produced.
    time.sleep(1.0)
    case.produce(served, late)
    case.wait(case.serve(served, idle_ms=4000))
    want = case.dump(served)
    served_rows, _ = delta_rows(case.consume(served, case.topics["output"]))

    # Two workers, killed with -9 after the 5th commit, then the same command again: it
    # resumes at the stored offsets and ends where the first run planned to.
    replayed = case.config("replayed", stats_interval_ms=200)
    argv = [case.rotor, "replay", "--config", str(replayed), "--kafka", "--jobs", "2"]
    env = dict(os.environ, ROTOR_FAILPOINT="replay.after_commit:5")
    killed = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    check(killed.returncode == -signal.SIGKILL and "failpoint replay.after_commit: killed"
          in killed.stderr, f"the replay was not killed at its 5th commit: {killed.returncode}"
          f"\n{killed.stderr[-2000:]}")
    partial = sum(d["next_pos"] for d in case.dump(replayed).values())
    check(0 < partial < len(events), f"the killed replay applied {partial} events")
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    check(rerun.returncode == 0, f"the rerun exited {rerun.returncode}:\n{rerun.stderr[-2000:]}")
    out = rerun.stdout
    resumed = re.search(r"\((\d+) partitions, (\d+) resumed\)", out)
    check(resumed and int(resumed.group(1)) == 6 and int(resumed.group(2)) > 0,
          f"the rerun did not resume: {out}")
    check_same_state(case.dump(replayed), want, "serve vs replay --kafka (killed, resumed)")

    # With publishing, into another output topic: every position, the same rows as serving
    # published (the batches differ, the rows may not).
    publish_topic = case.topics["output"] + ".replay"
    published = case.work / "published.yaml"
    published.write_text(case.config("published").read_text().replace(
        f"output_topic: {case.topics['output']}", f"output_topic: {publish_topic}"))
    case.create_topics(published, 6)
    done = subprocess.run([case.rotor, "replay", "--config", str(published), "--kafka",
                           "--publish", "--jobs", "3"], capture_output=True, text=True,
                          timeout=300)
    check(done.returncode == 0, f"replay --publish exited {done.returncode}:\n{done.stderr}")
    check_same_state(case.dump(published), want, "serve vs replay --kafka --publish")
    rows, seen = delta_rows(case.consume(published, publish_topic))
    check_outputs_match(want, rows, seen, exactly_once=False)
    for user, by_pos in rows.items():
        for pos, row in by_pos.items():
            if pos in served_rows.get(user, {}):
                check(row == served_rows[user][pos],
                      f"user {user} position {pos}: replay published other rows than serving")

    # Progress when not on a terminal: plain lines every log.stats_interval_ms, and the last.
    lines = [line for line in rerun.stderr.splitlines() if line.startswith("replay: ")]
    check(lines and re.match(r"replay: 100\.0% \((\d+) of \1 records\), \d+ events/s, ETA 0 s, "
                             r"6 of 6 partitions done$", lines[-1]),
          f"no final progress line from the rerun:\n{rerun.stderr[-1500:]}")

    # From a time on: the records produced after `late_from_ms` only, each user's history
    # starting there.
    later = case.config("later")
    case.run("replay", "--config", later, "--kafka", "--start", f"@{late_from_ms}")
    per_user = {}
    for line in events[3000:]:
        user = json.loads(line)["user_id"]
        per_user[user] = per_user.get(user, 0) + 1
    got = {u: d["next_pos"] for u, d in case.dump(later).items()}
    check(got == per_user, f"replay --start @time: {sorted(got.items())[:5]} != "
                           f"{sorted(per_user.items())[:5]}")

    # `rotor serve` continues from the replayed state: nothing is left to apply.
    log = case.wait(case.serve(replayed, idle_ms=3000, name="after-replay"))
    check(re.search(r"\b0 events \(", log), f"serve re-applied events after the replay:\n"
                                            f"{log[-2000:]}")
    check_same_state(case.dump(replayed), want, "serve after replay")
    print(f"replay: {len(want)} users, {len(events)} events; killed after {partial} events and "
          f"resumed; {sum(seen.values())} rows published by the replay; exact")


def api_of(proc, timeout=30):
    """The base URL of `rotor serve`'s API, from its log."""
    wait_for(lambda: upgrade.api_address(proc.text()) or proc.poll() is not None, timeout,
             f"the API address in {proc.log.name}")
    check(proc.poll() is None, f"rotor serve exited {proc.returncode}:\n{proc.text()[-3000:]}")
    return upgrade.api_address(proc.text())


def scrape_metrics(url):
    got = upgrade.http_get(url + "/metrics")
    check(got is not None and got[0] == 200, f"GET {url}/metrics: {got}")
    return upgrade.parse_metrics(got[1])


def by_model(messages):
    """The output messages grouped by their rotor.model_id: {model id: [message]}."""
    out = {}
    for m in messages:
        _, meta = decode(base64.b64decode(m["value_b64"]))
        out.setdefault(meta["rotor.model_id"], []).append(m)
    return out


def become_subreaper():
    """Makes this process the reaper of its orphaned descendants (Linux prctl
    PR_SET_CHILD_SUBREAPER), so that a daemon tools/upgrade.py started and left running is
    re-parented here and its exit status can be read with os.waitpid. False when refused."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def case_upgrade(case):
    """The blue/green model upgrade of docs/operations.md ("Upgrade"), driven by
    tools/upgrade.py on the real broker, and its rollback. Blue serves the siren bundle
    (exactly-once) while events keep arriving. Green is the dnn_only bundle with a new consumer
    group and state directory and the same output topic. A green on blue's state directory
    exits at once: the script fails, printing its log, blue untouched. A green that cannot be
    caught up within --timeout (100 polls asked for) is stopped, blue untouched. Started again,
    green resumes from the state that attempt left, finishes its backfill from the input's
    beginning and catches up; the script runs the rankers' switch while blue still serves and
    stops blue (SIGTERM), which exits 0. Input keeps arriving for green alone. Then the
    rollback, the same script with the roles swapped: blue, started again on its state,
    catches up on what it missed and green stops (exit 0). Green's state equals `rotor replay`
    of every event with its bundle (no event missed), blue's the replay with its own; in the
    output topic under read_committed the messages of each model id (what a ranker filtering
    on it reads) hold every position of that model's windows exactly once and rebuild its
    state."""
    reaper = become_subreaper()
    total, history, rate = 6000, 3000, 60
    events = synth(case.work, total, 40, 23)
    lines = events.read_text().splitlines(keepends=True)
    early, late = case.work / "history.jsonl", case.work / "live.jsonl"
    early.write_text("".join(lines[:history]))
    late.write_text("".join(lines[history:]))
    blue_cfg = case.config("blue", mode="exactly_once", batch=32)
    case.create_topics(blue_cfg, 4)
    # Blue has served a history: green has that much to backfill.
    case.produce(blue_cfg, early)
    blue = case.serve(blue_cfg, name="blue")
    blue_api = api_of(blue)
    wait_for(lambda: upgrade.metric_sum([scrape_metrics(blue_api)], "rotor_events_total")
             >= history, 60, f"blue to apply the first {history} events")
    feeder = Feeder(case, blue_cfg, late, rate=rate)

    def run_upgrade(config, serving_pid, *extra):
        """tools/upgrade.py from `serving_pid` to `config`'s daemon: (exit code, output, and
        the started daemon's (pid, API, model id) when it says done)."""
        argv = [PY, str(ROOT / "tools" / "upgrade.py"), "--rotor", case.rotor, "--green-config",
                str(config), "--blue-pid", str(serving_pid), "--interval", "0.5",
                "--progress-interval", "0", *map(str, extra)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        out = done.stdout + done.stderr
        log = case.work / f"upgrade-{config.stem}.out"
        log.write_text(out)
        case.logs.append(log)
        started = re.search(r"upgrade: started green: .* \(pid (\d+),", out)
        if started:
            case.detached.append(int(started.group(1)))
        end = re.search(r"upgrade: done: green pid (\d+), API (\S+), model (\w+)", out)
        check(done.returncode != 0 or end, f"tools/upgrade.py exited 0 without its last line:"
                                           f"\n{out[-3000:]}")
        return done.returncode, out, end and (int(end.group(1)), end.group(2), end.group(3))

    def drain(api, expected, what):
        """Until the daemon at `api` owns the 4 partitions with no lag and has applied
        `expected` events (or nothing more for 3 s: the state comparison then says what is
        missing)."""
        still = []

        def drained():
            metrics = scrape_metrics(api)
            applied = upgrade.metric_sum([metrics], "rotor_events_total")
            if not upgrade.lag_summary([metrics]).caught_up(0, partitions=4):
                still.clear()
                return False
            if applied >= expected:
                return True
            still[:] = still if still and still[0][1] == applied else [
                (time.monotonic(), applied)]
            return time.monotonic() - still[0][0] >= 3.0
        wait_for(drained, 120, f"{what} to apply every event")

    def exited_cleanly(pid, log):
        """Waits for a daemon the script started (re-parented here, the subreaper) to exit
        0."""
        if not reaper:
            wait_for(lambda: not upgrade.pid_running(pid), 60, f"{log.stem} to stop")
        else:
            _, status = os.waitpid(pid, 0)
            check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                  f"{log.stem} exited with status {status}:\n{log.read_text()[-3000:]}")
        check(re.search(r"rotor serve: \d+ events in", log.read_text()),
              f"{log} (beside its config) lacks the summary of a clean stop:\n"
              f"{log.read_text()[-3000:]}")
        return log.read_text()

    # A mistake: green pointed at blue's state directory (held by blue, and of another model).
    green_group = f"{case.group}-green"
    wrong = case.config("green-wrong", mode="exactly_once", bundle=GREEN_BUNDLE,
                        group=green_group)
    wrong.write_text(wrong.read_text().replace(str(case.work / "state-green-wrong"),
                                               str(case.work / "state-blue")))
    rc, out, _ = run_upgrade(wrong, blue.pid, "--timeout", "60")
    check(rc == upgrade.EXIT_GREEN_FAILED and "green exited" in out
          and "blue was not touched" in out and "state" in out.split("green exited", 1)[1],
          f"the upgrade with green on blue's state directory: exit {rc}:\n{out[-3000:]}")
    check(blue.poll() is None, f"blue exited after a failed upgrade:\n{blue.text()[-3000:]}")
    feeder.flowing("the upgrade")

    # An upgrade that gives up: caught up for 100 polls in a row cannot happen within 6 s. The
    # script stops green, which keeps its state, and leaves blue serving.
    green_cfg = case.config("green", mode="exactly_once", batch=32, bundle=GREEN_BUNDLE,
                            group=green_group)
    case.create_topics(green_cfg, 4)  # Green's own state changelog (<group>.changelog).
    rc, out, _ = run_upgrade(green_cfg, blue.pid, "--polls", "100", "--timeout", "6")
    check(rc == upgrade.EXIT_GREEN_FAILED and "did not catch up within --timeout 6 s" in out
          and "blue was not touched" in out and "green stopped" in out,
          f"the upgrade that times out: exit {rc}:\n{out[-3000:]}")
    check(blue.poll() is None, f"blue exited after a failed upgrade:\n{blue.text()[-3000:]}")
    first_green = (case.work / "green.log").read_text()
    first = re.search(r"rotor serve: (\d+) events in", first_green)
    check(first, f"green, stopped after the timeout, did not stop cleanly:\n{first_green[-3000:]}")

    # The upgrade: green resumes from the state the first attempt left.
    marker = case.work / "switched"
    switch = (f'echo "$ROTOR_GREEN_MODEL_ID $ROTOR_GREEN_PID" > {marker}; '
              f'kill -0 "$ROTOR_BLUE_PID" && echo blue-serving >> {marker}')
    began = time.monotonic()
    rc, out, green = run_upgrade(green_cfg, blue.pid, "--switch-cmd", switch, "--max-lag", "50",
                                 "--partitions", "4", "--timeout", "120")
    took = time.monotonic() - began
    check(rc == 0, f"tools/upgrade.py exited {rc}:\n{out[-3000:]}")
    second_green = (case.work / "green.log").read_text()[len(first_green):]
    check(int(first.group(1)) == 0 or re.search(r"assigned, resuming at [1-9]", second_green),
          f"green applied {first.group(1)} events before the timeout, but its second start "
          f"resumed nowhere from its state:\n{second_green[:3000]}")
    green_pid, green_api, green_id = green
    # The script reported green's lag until it was 50 or less three polls in a row.
    lags = [int(n) for n in re.findall(r"green lag (\d+) records over 4 partition", out)]
    check(lags and lags[-1] <= 50 and "caught up 3/3" in out,
          f"no progress lines ending caught up:\n{out[-3000:]}")
    case.wait(blue, timeout=30)  # The script stopped it: exit 0.
    switched = marker.read_text().split()
    check(switched == [green_id, str(green_pid), "blue-serving"],
          f"the switch command saw {switched}: not green's model and pid while blue served")
    blue_applied = case.applied(blue_cfg)
    check(0 < blue_applied < total, f"blue applied {blue_applied} of {total} events")
    # Input keeps arriving after blue stopped: only green sees it.
    feeder.flowing("blue stopped")
    at_rate = feeder.finish()
    drain(green_api, total, "green")

    # The rollback: the same script, blue's config as the new daemon, green as the old.
    rc, out, back = run_upgrade(blue_cfg, green_pid, "--max-lag", "50", "--partitions", "4",
                                "--timeout", "120")
    check(rc == 0, f"the rollback exited {rc}:\n{out[-3000:]}")
    exited_cleanly(green_pid, case.work / "green.log")
    blue_pid, blue_again_api, blue_id = back
    check(blue_id != green_id, f"blue came back with green's model {blue_id}")
    drain(blue_again_api, total - blue_applied, "blue, back")
    os.kill(blue_pid, signal.SIGTERM)
    blue_log = exited_cleanly(blue_pid, case.work / "blue.log")
    # Green's new group had no offsets: every partition from the log's beginning (the history
    # blue had served), published from there on. Blue came back where it had stopped.
    fresh = set(re.findall(r"partition (\d+): assigned, resuming at the beginning\n",
                           first_green))
    check(fresh == {"0", "1", "2", "3"}, f"green did not start every partition at the log's "
                                          f"beginning:\n{first_green[:3000]}")
    resumed = set(re.findall(r"partition (\d+): assigned, resuming at [1-9]\d*\n", blue_log))
    check(resumed == {"0", "1", "2", "3"}, f"blue, back, did not resume every partition at "
                                           f"its stored offset:\n{blue_log[:3000]}")

    case.check_input(blue_cfg, events)
    states = {green_id: case.dump(green_cfg), blue_id: case.dump(blue_cfg)}
    check_same_state(states[green_id], case.replay(events, bundle=GREEN_BUNDLE),
                     "green after the upgrade vs replay of every event with green's bundle")
    check_same_state(states[blue_id], case.replay(events),
                     "blue after the rollback vs replay of every event with its bundle")
    models = by_model(case.consume(blue_cfg, case.topics["output"]))
    check(set(models) == set(states),
          f"the output topic holds models {sorted(models)}, want {sorted(states)}")
    published = {}
    for model, messages in models.items():
        rows, seen = delta_rows(messages)
        check_outputs_match(states[model], rows, seen, exactly_once=True)
        published[model] = sum(seen.values())
    print(f"upgrade: green applied {first.group(1)} events before the attempt that timed out "
          f"stopped it; started again, it caught up from a lag of {max(lags)} and blue stopped "
          f"{took:.1f} s later, having applied {blue_applied} of {total} events ({history} + "
          f"{at_rate} at {rate}/s, then the rest at once); rolled back, blue caught up on the "
          f"rest; both states exact, {published[green_id]} green and {published[blue_id]} "
          f"blue rows, each once under read_committed")


def http(port, method, path, body=None, timeout=15):
    """One request to the API on 127.0.0.1:`port`: (status, headers, body bytes), whatever the
    status."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def api_port(proc, timeout=60):
    def found():
        m = re.search(r"API listening on 127\.0\.0\.1:(\d+)", proc.text())
        return int(m.group(1)) if m else None
    wait_for(found, timeout, f"{proc.log.name} to say where its API listens")
    return found()


def user_path(user):
    return "/v1/users/" + urllib.parse.quote(user, safe="")


def case_route(case):
    """Any instance answers for any user: three instances share 6 partitions (standby replicas
    on). Once the input is consumed, every user is asked for at every instance (metadata,
    tensors, and one POST /v1/score of all users): each instance gives the owner's answer
    (proxied, X-Rotor-Served-By naming the owner), equal to a replay of the input, and none is
    stale. Then one instance is killed with -9 and the other two are asked again and again
    while the group notices and moves its partitions: an answer is the exact state, or says it
    is stale (X-Rotor-Stale), or is a 503 with Retry-After; never anything else, never a wrong
    state unmarked. Once the partitions have moved, every answer is exact and fresh again."""
    events = synth(case.work, 3000, 40, 47)
    names = ("a", "b", "c")
    configs = {name: case.config(name, batch=32, kafka_extra="  standby_replicas: 1\n"
                                 "  standby_refresh_ms: 500",
                                 api_extra="  owners_refresh_ms: 300\n  forward_timeout_ms: 1500")
               for name in names}
    case.create_topics(configs["a"], 6)
    case.produce(configs["a"], events)
    procs = {name: case.serve(configs[name], name=name) for name in names}
    ports = {name: api_port(proc) for name, proc in procs.items()}
    url_of = {f"http://127.0.0.1:{port}": name for name, port in ports.items()}

    def settled(among):
        # Every partition consuming at exactly one instance, with no lag.
        owned = {}
        for name in among:
            status, _, body = http(ports[name], "GET", "/readyz")
            if status != 200:
                return False
            for p in json.loads(body)["partitions"]:
                if p["state"] != "consuming" or p["lag"] != 0 or p["partition"] in owned:
                    return False
                owned[p["partition"]] = name
        return len(owned) == 6
    wait_for(lambda: settled(names), 120, "three instances to consume all 6 partitions")
    want = case.replay(events)
    users = sorted(want)

    def metadata(name, user):
        status, headers, body = http(ports[name], "GET", user_path(user))
        doc = json.loads(body) if body.startswith(b"{") else {}
        doc.pop("state_age_ms", None)  # Depends on when it is asked.
        return status, headers, doc

    def check_exact(user, doc, what):
        w = want[user]
        check((doc.get("next_pos"), doc.get("rows"), doc.get("last_event_ts_ms"))
              == (w["next_pos"], w["rows"], w["last_ts_ms"]),
              f"{what}: user {user}: {doc} is not the replay's {w}")

    # Every user at every instance: the owner's answer, fresh, equal to the replay.
    proxied = 0
    owner_of = {}
    for user in users:
        answers = {}
        for name in names:
            status, headers, doc = metadata(name, user)
            check(status == 200 and "X-Rotor-Stale" not in headers,
                  f"{user} at {name}: {status} {headers} {doc}")
            check_exact(user, doc, f"GET at {name}")
            served_by = headers.get("X-Rotor-Served-By")
            if served_by:
                proxied += 1
                owner_of.setdefault(user, set()).add(url_of[served_by])
            else:
                owner_of.setdefault(user, set()).add(name)
            answers[name] = doc
        check(len(owner_of[user]) == 1 and len({json.dumps(d, sort_keys=True)
                                                 for d in answers.values()}) == 1,
              f"{user}: the instances disagree: owners {owner_of[user]}, answers {answers}")
        tensors = {http(ports[name], "GET", user_path(user) + "/tensors")[2] for name in names}
        check(len(tensors) == 1, f"{user}: the instances' tensors differ")
    check(proxied == 2 * len(users), f"{proxied} answers proxied, want {2 * len(users)}")
    # One POST /v1/score of every user at each instance: each entry as the owner scores it.
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    candidate = lines[0]  # An event as a candidate (its user and time do not count).
    request = {"ts_ms": max(e["ts_ms"] for e in lines) + 1000,
               "users": [{"user_id": u, "candidates": [candidate]} for u in users]}
    scores = {}
    for name in names:
        status, headers, body = http(ports[name], "POST", "/v1/score", request)
        check(status == 200 and "X-Rotor-Stale" not in headers, f"score at {name}: {status} "
              f"{body[:500]}")
        entries = json.loads(body)["users"]
        check([e.get("user_id") for e in entries] == users
              and all("error" not in e and "stale" not in e for e in entries),
              f"score at {name}: {entries[:3]}")
        scores[name] = json.dumps(entries, sort_keys=True)
    check(len(set(scores.values())) == 1, "POST /v1/score differs between instances")

    # Kill c: until the group moves its partitions, its users are stale or 503 at a and b.
    procs["c"].kill()
    procs["c"].wait()
    killed_at = time.monotonic()
    seen = {"fresh": 0, "stale": 0, "503": 0}
    rounds = 0
    while True:
        rounds += 1
        fresh_round = True
        for name in ("a", "b"):
            for user in users:
                status, headers, doc = metadata(name, user)
                if status == 200 and "X-Rotor-Stale" not in headers:
                    check_exact(user, doc, f"after the kill, fresh at {name}")
                    check(url_of.get(headers.get("X-Rotor-Served-By", ""), name) != "c",
                          f"{user} at {name}: served by the killed instance")
                    seen["fresh"] += 1
                    continue
                fresh_round = False
                if status == 200:
                    check("stale" in doc and doc["stale"]["reason"],
                          f"{user} at {name}: stale header but no reason: {doc}")
                    seen["stale"] += 1
                elif status == 503:
                    check(headers.get("Retry-After") == "1", f"{user} at {name}: 503 {headers}")
                    seen["503"] += 1
                else:
                    check(False, f"{user} at {name} after the kill: {status} {headers} {doc}")
        if fresh_round and seen["stale"] + seen["503"] > 0:
            break
        check(time.monotonic() - killed_at < 180,
              f"answers still not fresh 180 s after the kill: {seen}")
        time.sleep(0.2)
    took = time.monotonic() - killed_at
    wait_for(lambda: settled(("a", "b")), 60, "a and b to consume all 6 partitions between them")
    for name in ("a", "b"):
        procs[name].send_signal(signal.SIGTERM)
        case.wait(procs[name])
    print(f"route: {len(users)} users asked at 3 instances, {proxied} answers proxied to the "
          f"owner, all exact; POST /v1/score of {len(users)} users equal at every instance; "
          f"after killing c, {rounds} rounds over {took:.1f} s: {seen['stale']} stale answers, "
          f"{seen['503']} 503 Retry-After, {seen['fresh']} fresh ones, all exact")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotor", required=True, help="the rotor binary")
    parser.add_argument("--name", default="ctest", help="the broker.sh broker to use")
    parser.add_argument("--case", required=True,
                        choices=["events", "bad", "restart", "eos", "scaleout", "stall",
                                 "eos_failpoints", "zombie", "snapshots", "outage",
                                 "outage_eos", "replay", "changelog", "upgrade", "three",
                                 "standby", "route"])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--no-wal", action="store_true",
                        help="state.wal: false (a kill -9 rolls the state back to its last "
                             "flush; the re-apply rule rebuilds it from the input)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    bootstrap = broker.bootstrap_of(args.name)
    work = Path(tempfile.mkdtemp(prefix=f"rotor-it-{args.case}-"))
    case = Case(os.path.abspath(args.rotor), bootstrap, args.case, work)
    case.wal = not args.no_wal
    if args.no_wal:
        print(f"{args.case}: state.wal false")
    began = time.monotonic()
    ok = False
    try:
        if args.case == "eos":
            case_eos(case, args.kills)
        elif args.case == "stall":
            case_stall(case, args.name)
        elif args.case == "outage":
            case_outage(case, args.name, "at_least_once")
        elif args.case == "outage_eos":
            case_outage(case, args.name, "exactly_once")
        elif args.case == "changelog":
            case_changelog(case, args.name)
        else:
            globals()[f"case_{args.case}"](case)
        ok = True
    except Skip as e:
        print(f"SKIP ({args.case}): {e}")
        ok = True
        return 77
    except AssertionError as e:
        print(f"FAIL ({args.case}): {e}\nwork directory: {work}", file=sys.stderr)
        for log in case.logs[-3:]:
            print(f"---- {log} (tail)\n{log.read_text()[-2500:]}", file=sys.stderr)
        return 1
    finally:
        case.cleanup()
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"PASS {args.case} in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
