"""Restore from the state changelog vs replaying the input, on a real Kafka broker on loopback.

One run: fresh topics (4 partitions) on a broker started by tools/kafka/broker.sh (nice 0, on
the same cores), every event of the input file produced, `rotor serve` (release build,
at-least-once) until idle, which also writes the state changelog. Then, each into a fresh state
directory:

  restore   `rotor serve` in the same consumer group: every partition is restored from the
            changelog (the log's "restored from ... in S s" lines, summed) and nothing of the
            input is applied again (checked);
  replay    `rotor replay --kafka --jobs 1`, the decode of every input event, as a new owner
            without a changelog would do it (and --jobs 2);

and every restored and replayed user's window digest (`rotor inspect --all`) is checked equal
to the served one. The input is also served once more without a changelog (another group,
`kafka.changelog_topic: ""`): what writing the changelog costs serving. By default the changelog is read as written (not compacted: compaction
waits one hour, min.compaction.lag.ms), so each event's row and metadata record is read back:
the worst case for the restore.

    /usr/bin/python3 bench/restore.py                        # 1M events of 10,000 users
    /usr/bin/python3 bench/restore.py --users 1000 --compacted

--compacted creates the changelog with no compaction lag and small segments and waits until
the broker's log cleaner has compacted it (its size on disk settles), as a changelog older
than min.compaction.lag.ms is. Input: data/synth-1000000-seed1-u<users>.jsonl (generated on
first use; 10,000 users is bench/load.py's input). Slow by design (a few minutes): not part of
tools/test.sh. Results: stdout and build/bench-results/restore-u<users>[-compacted].json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

from loadlib import (DEFAULT_EVENTS, PYTHON, RESULTS, ROOT, ROTOR, Broker, build_rotor,
                     ensure_events, log, make_bundle, rotor, write_config)


def serve_until_idle(config, serve_log, idle_ms=3000):
    start = time.monotonic()
    with open(serve_log, "w") as out:
        done = subprocess.run([ROTOR, "serve", "--config", config, "--exit-when-idle-ms",
                               str(idle_ms)], stdout=out, stderr=subprocess.STDOUT)
    text = open(serve_log).read()
    if done.returncode != 0:
        sys.exit(f"rotor serve exited {done.returncode}:\n{text[-3000:]}")
    return text, time.monotonic() - start


def digests(config):
    out = rotor("inspect", "--config", config, "--all")
    return {d["user"]: (d["next_pos"], d["digest"]) for d in map(json.loads, out.splitlines())}


def events_of(users):
    """1M synthetic events of `users` users (sirenrope.synth), generated on first use."""
    if users == 10000:
        ensure_events(DEFAULT_EVENTS)
        return DEFAULT_EVENTS
    path = os.path.join(ROOT, "data", f"synth-1000000-seed1-u{users}.jsonl")
    if not os.path.exists(path):
        log(f"generating {path}")
        subprocess.run([PYTHON, "-m", "sirenrope.synth", "--events", "1000000", "--users",
                        str(users), "--seed", "1", "--config",
                        os.path.join(ROOT, "configs", "demo.json"), "--out", path + ".tmp"],
                       cwd=os.path.join(ROOT, "python"), check=True, stdout=subprocess.DEVNULL)
        os.replace(path + ".tmp", path)
    return path


def changelog_bytes(broker_name, topic):
    """Bytes of `topic`'s log segments on the local broker's disk."""
    data = os.path.join(ROOT, "build", "kafka", broker_name, "data")
    total = 0
    for entry in os.listdir(data):
        if entry.rsplit("-", 1)[0] == topic:
            folder = os.path.join(data, entry)
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                         if f.endswith(".log"))
    return total


def create_compacting_changelog(bootstrap, topic, partitions):
    """The changelog as `rotor topics` makes it, but compacted at once: no compaction lag,
    16 MiB segments, any dirt cleanable; tombstones dropped once cleaned."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1, config={
        "cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.bytes": "16777216",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})])
    for future in futures.values():
        future.result(timeout=60)


def wait_compacted(broker_name, topic, settle_s=30, timeout_s=300):
    """Waits until the changelog's size on disk stopped shrinking for settle_s."""
    start = time.monotonic()
    size, since = changelog_bytes(broker_name, topic), time.monotonic()
    while time.monotonic() - since < settle_s and time.monotonic() - start < timeout_s:
        time.sleep(2)
        now = changelog_bytes(broker_name, topic)
        if now < size:
            size, since = now, time.monotonic()
    return size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10000,
                        help="users of the 1M events (10000: the default input)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--compacted", action="store_true",
                        help="let the broker compact the changelog before the restore")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        build_rotor()
    args.events = events_of(args.users)
    bundle = make_bundle("default")
    n_events = sum(1 for _ in open(args.events))
    work = tempfile.mkdtemp(prefix="rotor-restore-")
    tag = f"restore-{uuid.uuid4().hex[:6]}"
    with Broker("bench") as broker:
        served = write_config(os.path.join(work, "served.yaml"), tag, broker.bootstrap, bundle,
                              os.path.join(work, "served"), api_listen=None)
        changelog = f"{tag}.changelog"  # <group_id>.changelog: the config's group is the tag.
        if args.compacted:
            create_compacting_changelog(broker.bootstrap, changelog, args.partitions)
        rotor("topics", "--config", served, "--partitions", args.partitions)
        log(f"producing {n_events} events")
        rotor("produce", "--config", served, "--file", args.events)
        log("serving them (and writing the changelog)")
        text, serve_s = serve_until_idle(served, os.path.join(work, "served.log"))
        m = re.search(r"(\d+) events in ([0-9.]+) s busy", text)
        busy_s = float(m.group(2)) if m else float("nan")
        want = digests(served)
        written_bytes = changelog_bytes("bench", changelog)
        kept_bytes = written_bytes
        if args.compacted:
            log(f"waiting for the broker to compact the changelog ({written_bytes / 1e6:.0f} MB)")
            kept_bytes = wait_compacted("bench", changelog)

        log("restoring into a fresh state directory (same group)")
        restored = write_config(os.path.join(work, "restored.yaml"), tag, broker.bootstrap,
                                bundle, os.path.join(work, "restored"), api_listen=None)
        text, restore_wall_s = serve_until_idle(restored, os.path.join(work, "restored.log"),
                                                idle_ms=1000)
        lines = re.findall(r"restored from '[^']*' \((\d+) records, ([0-9.]+) MB in ([0-9.]+) s\)",
                           text)
        if len(lines) != args.partitions:
            sys.exit(f"expected {args.partitions} partitions restored:\n{text[-3000:]}")
        if not re.search(r"\b0 events \(", text):
            sys.exit(f"the restore re-applied input:\n{text[-3000:]}")
        restore_s = sum(float(s) for _, _, s in lines)
        records = sum(int(r) for r, _, _ in lines)
        megabytes = sum(float(mb) for _, mb, _ in lines)
        if digests(restored) != want:
            sys.exit("the restored state differs from the served one")

        # What the changelog costs serving: the same input, another group, no changelog.
        log("serving the input again without a changelog (the cost of writing it)")
        bare = write_config(os.path.join(work, "bare.yaml"), tag + "-bare", broker.bootstrap,
                            bundle, os.path.join(work, "bare"), api_listen=None,
                            extra="")
        text = open(bare).read().replace(f"input_topic: {tag}-bare.events",
                                         f"input_topic: {tag}.events")
        text = text.replace("kafka:\n", "kafka:\n  changelog_topic: \"\"\n", 1)
        open(bare, "w").write(text)
        rotor("topics", "--config", bare, "--partitions", args.partitions)
        text, _ = serve_until_idle(bare, os.path.join(work, "bare.log"))
        m = re.search(r"(\d+) events in ([0-9.]+) s busy", text)
        bare_busy_s = float(m.group(2)) if m else float("nan")

        replay = {}
        for jobs in (1, 2):
            log(f"replaying the input (--jobs {jobs})")
            config = write_config(os.path.join(work, f"replay{jobs}.yaml"), tag, broker.bootstrap,
                                  bundle, os.path.join(work, f"replay{jobs}"), api_listen=None)
            out = rotor("replay", "--config", config, "--kafka", "--jobs", jobs)
            m = re.search(r"in ([0-9.]+) s \(", out)
            replay[jobs] = float(m.group(1))
            if digests(config) != want:
                sys.exit(f"the replayed state (--jobs {jobs}) differs from the served one")

    result = {
        "events": n_events,
        "compacted": args.compacted,
        "changelog_written_mb": written_bytes / 1e6,
        "changelog_on_disk_mb": kept_bytes / 1e6,
        "users": len(want),
        "partitions": args.partitions,
        "serve_busy_s": busy_s,
        "serve_without_changelog_busy_s": bare_busy_s,
        "restore_s": restore_s,
        "restore_wall_s": restore_wall_s,
        "changelog_records": records,
        "changelog_mb": megabytes,
        "replay_jobs1_s": replay[1],
        "replay_jobs2_s": replay[2],
        "replay_over_restore": replay[1] / restore_s if restore_s > 0 else float("inf"),
        "replay2_over_restore": replay[2] / restore_s if restore_s > 0 else float("inf"),
        "load_average": os.getloadavg(),
    }
    os.makedirs(RESULTS, exist_ok=True)
    name = f"restore-u{args.users}{'-compacted' if args.compacted else ''}.json"
    with open(os.path.join(RESULTS, name), "w") as f:
        json.dump(result, f, indent=2)
    print(f"{n_events} events of {len(want)} users on {args.partitions} partitions; changelog "
          f"{written_bytes / 1e6:.0f} MB written, {kept_bytes / 1e6:.0f} MB when restored"
          f"{' (compacted)' if args.compacted else ' (not compacted)'}")
    print(f"  serve (busy):            {busy_s:8.1f} s  ({bare_busy_s:.1f} s without the "
          f"changelog: {busy_s / bare_busy_s:.2f}x)")
    print(f"  restore (sum of parts):  {restore_s:8.1f} s  ({records} records, {megabytes:.0f} MB;"
          f" {restore_wall_s:.1f} s from start to idle exit)")
    print(f"  replay --jobs 1:         {replay[1]:8.1f} s  = {result['replay_over_restore']:.1f}x "
          f"the restore")
    print(f"  replay --jobs 2:         {replay[2]:8.1f} s  = {result['replay2_over_restore']:.1f}x "
          f"the restore")
    print("  every restored and replayed window equal to the served one")


if __name__ == "__main__":
    main()
