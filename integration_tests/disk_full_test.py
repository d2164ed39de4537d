"""`rotor serve` on a state disk that fills up (docs/daemon.md, "Disk full").

The daemon runs in embedded mode (librdkafka's mock cluster in the process, no broker) with
state.dir on a tmpfs of a few hundred KiB, fed a flood of distinct users:

  1. it must stop cleanly: exit status 75, "no space left" and state.dir in the message, no
     abort (RocksDB 7.8 used to kill it with SIGABRT, `sync_without_flush_called_`);
  2. started again on the disk still full, it stops the same way; the state left there is then
     copied to a roomy directory, and `rotor serve` started on it with the same feed resumes
     after the last commit (only the events not committed are applied);
  3. the final state equals `rotor replay` of the same events, user by user (the digests of
     `rotor inspect --all`), so the failed commit left nothing half-applied.

Mounting a tmpfs needs root (CAP_SYS_ADMIN): without it, or when the mount fails, the test
skips with exit status 77 (CTest's SKIP_RETURN_CODE).

  sudo /usr/bin/python3 integration_tests/disk_full_test.py --rotor build/debug/app/rotor
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "testdata" / "golden" / "siren.bundle.safetensors"
PY = "/usr/bin/python3"
SKIP = 77
DISK_FULL = 75  # rotor's exit status for a full state disk (app/rotor_main.cc).
TMPFS_SIZE = "384k"
EVENTS = 2000
# The daemon's periodic stats line: events processed so far.
STATS = re.compile(r"\] (\d+) events \(")


class Skip(Exception):
    pass


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def config(work, name, state_dir):
    path = work / f"{name}.yaml"
    path.write_text(f"""
model:
  bundle: {BUNDLE}
kafka:
  embedded: true
  embedded_partitions: 4
pipeline:
  max_batch_events: 64
output:
  snapshot_interval_ms: 0
state:
  dir: {state_dir}
  sync_writes: false
  block_cache_bytes: 8MiB
  write_buffer_bytes: 256KiB
log:
  stats_interval_ms: 200
api:
  listen: "127.0.0.1:0"  # A free port: never in another run's way.
""")
    return path


def run(rotor, *args, timeout=240):
    return subprocess.run([rotor, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def must(done, what):
    check(done.returncode == 0,
          f"{what} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout


def dump(rotor, cfg):
    out = must(run(rotor, "inspect", "--config", cfg, "--all"), "rotor inspect")
    return {d["user"]: d for d in map(json.loads, out.splitlines())}


def mount_tmpfs(path):
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise Skip(f"mount -t tmpfs failed: {done.stderr.strip()}")


def case(rotor, work):
    if os.geteuid() != 0:
        raise Skip("not root: mounting a small tmpfs for state.dir needs root")
    events = work / "events.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    subprocess.run([PY, "-m", "sirenrope.synth", "--events", str(EVENTS), "--users",
                    str(EVENTS), "--seed", "7", "--out", str(events)], check=True, env=env,
                   capture_output=True)

    small = work / "small"
    small.mkdir()
    mount_tmpfs(small)
    try:
        full_cfg = config(work, "full", small / "state")
        began = time.monotonic()
        done = run(rotor, "serve", "--config", full_cfg, "--feed", events,
                   "--exit-when-idle-ms", "3000")
        log = done.stdout + done.stderr
        (work / "full.log").write_text(log)
        check(done.returncode == DISK_FULL,
              f"rotor serve on a full disk exited {done.returncode}, want {DISK_FULL} "
              f"(negative: killed by that signal):\n{log[-3000:]}")
        check("Assertion" not in log and "AddressSanitizer" not in log,
              f"rotor serve aborted or crashed:\n{log[-3000:]}")
        check("no space left" in done.stderr, f"no 'no space left' in:\n{done.stderr[-2000:]}")
        check(f"state.dir '{small / 'state'}'" in done.stderr,
              f"state.dir not named in:\n{done.stderr[-2000:]}")
        print(f"full disk: exit {done.returncode} after {time.monotonic() - began:.1f}s")
        # A restart on the disk still full stops the same way, before consuming anything.
        again = run(rotor, "serve", "--config", full_cfg, "--feed", events,
                    "--exit-when-idle-ms", "3000")
        check(again.returncode == DISK_FULL and "no space left" in again.stderr,
              f"rotor serve restarted on the full disk exited {again.returncode}:\n"
              f"{(again.stdout + again.stderr)[-3000:]}")
        roomy = work / "roomy"
        shutil.copytree(small / "state", roomy)
    finally:
        subprocess.run(["umount", str(small)], check=False)

    roomy_cfg = config(work, "roomy", roomy)
    before = dump(rotor, roomy_cfg)
    committed = sum(d["next_pos"] for d in before.values())  # Events in the state.
    check(0 < committed < EVENTS,
          f"want some events committed before the disk filled, not {committed} of {EVENTS}")
    print(f"committed before the disk filled: {committed} events of {len(before)} users")

    # The restart runs until it has applied what was not committed, then stops on SIGTERM
    # (`--exit-when-idle-ms` waits for as many records as the feed produced, and a resumed run
    # never consumes the ones committed before).
    target = EVENTS - committed
    log_path = work / "roomy.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([rotor, "serve", "--config", str(roomy_cfg), "--feed",
                                 str(events)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not any(int(n) >= target for n in STATS.findall(log_path.read_text())):
            check(proc.poll() is None,
                  f"rotor serve exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            check(time.monotonic() < deadline,
                  f"rotor serve did not apply {target} events in 180 s:\n"
                  f"{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    check(rc == 0, f"rotor serve on the roomy copy exited {rc}:\n{text[-3000:]}")
    # It resumed from the stored offsets: only the events not committed yet were applied.
    check(f"rotor serve: {target} events" in text,
          f"want the {target} events not yet committed applied:\n{text[-2000:]}")

    replay_cfg = config(work, "replay", work / "replay-state")
    must(run(rotor, "replay", "--config", replay_cfg, "--file", events), "rotor replay")
    got = dump(rotor, roomy_cfg)
    want = dump(rotor, replay_cfg)
    check(set(got) == set(want), f"users differ: {sorted(set(got) ^ set(want))[:5]}")
    for user in want:
        check(got[user] == want[user], f"user {user}: {got[user]} != {want[user]}")
    print(f"restarted on a roomy disk: {len(got)} users, state equal to replay")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotor", required=True, help="the rotor binary")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rotor-disk-full-"))
    began = time.monotonic()
    ok = False
    try:
        case(os.path.abspath(args.rotor), work)
        ok = True
    except Skip as e:
        print(f"SKIP disk_full: {e}")
        ok = True
        return SKIP
    except AssertionError as e:
        print(f"FAIL disk_full: {e}\nwork directory: {work}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"PASS disk_full in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
