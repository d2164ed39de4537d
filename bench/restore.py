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
to the served one. The changelog is read as written (not compacted: compaction waits one hour,
min.compaction.lag.ms), so each event's row and metadata record is read back: the worst case
for the restore.

    /usr/bin/python3 bench/restore.py                  # 1M events of 10,000 users
    /usr/bin/python3 bench/restore.py --events data/other.jsonl

Input: data/synth-1000000-seed1-u10000.jsonl (generated on first use, as bench/load.py's).
Slow by design (a few minutes): not part of tools/test.sh. Results: stdout and
build/bench-results/restore.json.
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

from loadlib import (DEFAULT_EVENTS, RESULTS, ROTOR, Broker, build_rotor, ensure_events, log,
                     make_bundle, rotor, write_config)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", default=DEFAULT_EVENTS)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        build_rotor()
    ensure_events(args.events)
    bundle = make_bundle("default")
    n_events = sum(1 for _ in open(args.events))
    work = tempfile.mkdtemp(prefix="rotor-restore-")
    tag = f"restore-{uuid.uuid4().hex[:6]}"
    with Broker("bench") as broker:
        served = write_config(os.path.join(work, "served.yaml"), tag, broker.bootstrap, bundle,
                              os.path.join(work, "served"), api_listen=None)
        rotor("topics", "--config", served, "--partitions", args.partitions)
        log(f"producing {n_events} events")
        rotor("produce", "--config", served, "--file", args.events)
        log("serving them (and writing the changelog)")
        text, serve_s = serve_until_idle(served, os.path.join(work, "served.log"))
        m = re.search(r"(\d+) events in ([0-9.]+) s busy", text)
        busy_s = float(m.group(2)) if m else float("nan")
        want = digests(served)

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
        "users": len(want),
        "partitions": args.partitions,
        "serve_busy_s": busy_s,
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
    with open(os.path.join(RESULTS, "restore.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"{n_events} events of {len(want)} users on {args.partitions} partitions")
    print(f"  serve (busy):            {busy_s:8.1f} s")
    print(f"  restore (sum of parts):  {restore_s:8.1f} s  ({records} records, {megabytes:.0f} MB;"
          f" {restore_wall_s:.1f} s from start to idle exit)")
    print(f"  replay --jobs 1:         {replay[1]:8.1f} s  = {result['replay_over_restore']:.1f}x "
          f"the restore")
    print(f"  replay --jobs 2:         {replay[2]:8.1f} s  = {result['replay2_over_restore']:.1f}x "
          f"the restore")
    print("  every restored and replayed window equal to the served one")


if __name__ == "__main__":
    main()
