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
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "kafka"))
sys.path.insert(0, str(ROOT / "python"))
import broker  # noqa: E402
from sirenrope.safetensors_io import decode  # noqa: E402

BUNDLE = ROOT / "testdata" / "golden" / "siren.bundle.safetensors"
PY = "/usr/bin/python3"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


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
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.topics = {"input": f"it.{tag}.events", "output": f"it.{tag}.tensors",
                       "dlq": f"it.{tag}.dead"}
        self.group = f"it-{tag}"
        self.logs = []

    def config(self, name, mode="at_least_once", batch=64, extra="", kafka_extra="",
               log_level="info"):
        state = self.work / f"state-{name}"
        path = self.work / f"{name}.yaml"
        path.write_text(f"""
model:
  bundle: {BUNDLE}
kafka:
  bootstrap_servers: "{self.bootstrap}"
  group_id: {self.group}
  input_topic: {self.topics['input']}
  output_topic: {self.topics['output']}
  dead_letter_topic: {self.topics['dlq']}
  session_timeout_ms: 6000
{kafka_extra}
delivery:
  mode: {mode}
  transactional_id: {self.group}-{name}
pipeline:
  max_batch_events: {batch}
  max_message_bytes: 4096
output:
  snapshot_interval_ms: 0
state:
  dir: {state}
  sync_writes: false
log:
  level: {log_level}
  stats_interval_ms: 0
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
        """`rotor topics`, then waits until every partition of the input and output topics
        answers a fetch. A partition is in the metadata before its broker has loaded it, and
        a produce request then fails (NOT_LEADER_OR_FOLLOWER) while a later one to the same
        partition, already in flight, may succeed: the broker takes any first sequence number
        from a producer it has no state for, and librdkafka 2.0's idempotent producer then
        takes the failed message for delivered ("implicit ack") and never resends it. Seen
        with `rotor produce --rate` right after `rotor topics` on a busy broker: a partition
        whose log began at sequence 1, its first event lost, and `0 failed` reported."""
        self.run("topics", "--config", config, "--partitions", partitions)
        began = time.monotonic()
        readers = [subprocess.Popen([self.rotor, "consume", "--config", str(config), "--topic",
                                     self.topics[t], "--idle-ms", "100"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for t in ("input", "output")]
        for reader in readers:
            _, err = reader.communicate(timeout=120)
            check(reader.returncode == 0, f"reading the new topics: {err[-2000:]}")
        # The reader gives up after 60 s whether or not every partition answered.
        check(time.monotonic() - began < 45, "the new topics' partitions did not come online")

    def serve(self, config, idle_ms=None, name="serve"):
        log = self.work / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        args = [self.rotor, "serve", "--config", str(config)]
        if idle_ms:
            args += ["--exit-when-idle-ms", str(idle_ms)]
        out = open(log, "w")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        proc.log = log
        return proc

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
        out = self.run("consume", "--config", config, "--topic", topic, "--json", "true",
                       "--idle-ms", "3000")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def dump(self, config):
        out = self.run("inspect", "--config", config, "--all", "true")
        return {d["user"]: d for d in map(json.loads, out.splitlines())}

    def replay(self, events):
        config = self.config("replay")
        self.run("replay", "--config", config, "--file", events)
        return self.dump(config)


def synth(work, events, users, seed):
    path = work / f"events-{events}-{seed}.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    subprocess.run([PY, "-m", "sirenrope.synth", "--events", str(events), "--users", str(users),
                    "--seed", str(seed), "--out", str(path)], check=True, env=env,
                   capture_output=True)
    return path


def delta_rows(messages):
    """{user: {pos: (k rows, v rows)}} from the output messages, and how often each pos came."""
    rows, seen = {}, {}
    for m in messages:
        tensors, meta = decode(base64.b64decode(m["value_b64"]))
        check(meta["rotor.kind"] == "delta", f"unexpected {meta['rotor.kind']} message")
        user = meta["rotor.user_id"]
        check(user == m["key"], f"message key {m['key']!r} but user {user!r}")
        blocks = (len(tensors) - 1) // 2
        for i, pos in enumerate(tensors["pos"].tolist()):
            seen[(user, pos)] = seen.get((user, pos), 0) + 1
            rows.setdefault(user, {})[pos] = [
                (tensors[f"k.{b}"][i].astype("<f4").tobytes(),
                 tensors[f"v.{b}"][i].astype("<f4").tobytes()) for b in range(blocks)]
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
        # A dead letter keeps at most pipeline.max_message_bytes (4096 here) of the value; a
        # cut one says how long the original was.
        kept = raw[:4096]
        got = by_value.get(kept)
        check(got, f"bad input ({reason}) {value[:60]!r} not in the dead-letter topic"
                   + (" (cut to its first 4096 bytes)" if len(raw) > 4096 else ""))
        headers = got[0]["headers"]
        check(headers.get("rotor.source.value_bytes") == (str(len(raw)) if len(raw) > 4096
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
    check(0 < done < 3000, f"kill point not mid-stream: {done} events in state")
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
    config = case.config("a", batch=32, kafka_extra=kafka_extra, log_level="debug")
    case.create_topics(config, 4)
    case.produce(config, events)
    daemon = case.serve(config, idle_ms=8000)
    wait_for(lambda: "assigned" in daemon.log.read_text(), 60, "the assignment")
    time.sleep(0.5)
    pid = broker.running_pid(broker.state_dir(broker_name))
    check(pid is not None, f"broker '{broker_name}' is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(4)
    finally:
        os.kill(pid, signal.SIGCONT)
    log = case.wait(daemon)
    done = re.search(r"(\d+) events \(", log)
    check(done and int(done.group(1)) == 6000, "the daemon did not apply all 6000 events")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotor", required=True, help="the rotor binary")
    parser.add_argument("--name", default="ctest", help="the broker.sh broker to use")
    parser.add_argument("--case", required=True,
                        choices=["events", "bad", "restart", "eos", "scaleout", "stall"])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    bootstrap = broker.bootstrap_of(args.name)
    work = Path(tempfile.mkdtemp(prefix=f"rotor-it-{args.case}-"))
    case = Case(os.path.abspath(args.rotor), bootstrap, args.case, work)
    began = time.monotonic()
    ok = False
    try:
        if args.case == "eos":
            case_eos(case, args.kills)
        elif args.case == "stall":
            case_stall(case, args.name)
        else:
            globals()[f"case_{args.case}"](case)
        ok = True
    except AssertionError as e:
        print(f"FAIL ({args.case}): {e}\nwork directory: {work}", file=sys.stderr)
        for log in case.logs[-3:]:
            print(f"---- {log} (tail)\n{log.read_text()[-2500:]}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"PASS {args.case} in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
