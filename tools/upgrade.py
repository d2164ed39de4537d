#!/usr/bin/python3
"""Blue/green model upgrade of `rotor serve`: start the new bundle's daemon ("green") beside
the serving one ("blue"), wait until green has backfilled from the input topic and caught up,
switch the rankers, stop blue. docs/operations.md, "Upgrade", is the procedure; this drives it.

  tools/upgrade.py --rotor /usr/local/bin/rotor --green-config green.yaml --blue-pid PID \
      [--switch-cmd CMD] [--max-lag N] [--timeout S]

Steps:
  1. Start green: `rotor serve --config GREEN` detached in its own session (it keeps running
     after this script exits), stdout and stderr appended to --log (default: the config's path
     with .log for .yaml). Green's config must have its own kafka.group_id and state.dir and
     the new model.bundle; a new group has no committed offsets, so green consumes every input
     partition from the log's beginning and publishes all of it (docs/daemon.md, "Where
     consumption resumes"). Its API address is read from its log ("API listening on
     HOST:PORT"), so api.listen may be port 0. Or, where a supervisor starts green (systemd,
     Kubernetes), --green-start-cmd CMD runs CMD and --green-url URL (repeatable: one per
     green instance) says where the API answers.
  2. Wait until every green instance answers GET /readyz 200 and the sum of
     rotor_consumer_lag over the partitions its instances own (GET /metrics; -1, unknown,
     never counts as caught up) is at most --max-lag for --polls consecutive polls,
     --interval seconds apart. Progress (lag, events/s, ETA) every --progress-interval s.
  3. Run --switch-cmd (the rankers' switch) with ROTOR_GREEN_MODEL_ID, ROTOR_GREEN_API,
     ROTOR_GREEN_PID and ROTOR_BLUE_PID in its environment; it must exit 0.
  4. Stop blue: SIGTERM to --blue-pid and wait for it to exit (--blue-stop-timeout), or run
     --blue-stop-cmd (e.g. "systemctl stop rotor-blue", "kubectl scale statefulset rotor-blue
     --replicas=0"). Without either, blue is left running and the script says so.
  5. Print `upgrade: done: green pid PID, API URL, model ID`.

Exit codes:
  0  green caught up, the switch ran, blue stopped (or was left to the operator).
  1  green exited early, a partition of green stopped, or --timeout passed: nothing was
     switched and blue was not touched. Green, if this script started it, is stopped
     (SIGTERM; --keep-green leaves it running); its state.dir is kept, so running the script
     again resumes its backfill where it stopped.
  2  bad usage (a missing file, a --blue-pid that is not a running `rotor serve`).
  3  --switch-cmd failed: blue and green both keep running; fix the switch and run it by hand.
  4  blue did not stop (the stop command failed or the pid outlived --blue-stop-timeout):
     green serves and the rankers were switched; stop blue by hand.

Only the Python standard library (run it with /usr/bin/python3). The pure parts
(parse_metrics, lag_summary, api_address, ...) are tested in python/tests/test_upgrade.py;
the whole procedure against the real broker by integration_tests/daemon_test.py --case upgrade.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

EXIT_OK, EXIT_GREEN_FAILED, EXIT_USAGE, EXIT_SWITCH_FAILED, EXIT_BLUE_RUNNING = 0, 1, 2, 3, 4

# app/commands.cc: spdlog::info("rotor serve: API listening on {}{}{}:{}", ...), IPv6 in [].
_LISTENING = re.compile(r"rotor serve: API listening on (\[[0-9A-Fa-f:.]+\]|[^\s:]+):(\d+)")
# One sample of the Prometheus text format 0.0.4: name, optional {labels}, value.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class UpgradeError(Exception):
    """A failed step; `code` is the exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# ---- pure parts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict
    value: float


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments skipped); a line that is not a
    sample raises ValueError naming it."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a metric sample: {line!r}")
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            value = float(m.group(3))
        except ValueError:
            raise ValueError(f"not a metric value: {line!r}") from None
        samples.append(Sample(m.group(1), labels, value))
    return samples


@dataclass
class LagSummary:
    """Where the green instances stand, from their rotor_consumer_lag and
    rotor_partition_phase series (docs/daemon.md, Metrics)."""

    total: int = 0  # Records behind, over the partitions with a known lag.
    partitions: int = 0  # Partitions owned (phase != -1), over every instance.
    unknown: list = field(default_factory=list)  # (topic, partition) with lag -1.
    restoring: list = field(default_factory=list)  # phase 0.
    stopped: list = field(default_factory=list)  # phase 2: the log lost what the state needs.

    def caught_up(self, max_lag: int, partitions: int | None = None) -> bool:
        """Owns partitions (all `partitions` of the input, when given), knows every lag,
        none restoring or stopped, and is at most `max_lag` records behind."""
        want = partitions if partitions else 1
        return (self.partitions >= want and not self.unknown and not self.restoring
                and not self.stopped and self.total <= max_lag)


def lag_summary(instances: list[list[Sample]]) -> LagSummary:
    """Sums the lag of the partitions each instance owns now (phase != -1; a partition that
    moved away keeps its series at phase -1 and lag 0)."""
    out = LagSummary()
    for samples in instances:
        phase, lag = {}, {}
        for s in samples:
            key = (s.labels.get("topic", ""), s.labels.get("partition", ""))
            if s.name == "rotor_partition_phase":
                phase[key] = s.value
            elif s.name == "rotor_consumer_lag":
                lag[key] = s.value
        for key, p in sorted(phase.items()):
            if p < 0:
                continue
            out.partitions += 1
            if p == 0:
                out.restoring.append(key)
            elif p == 2:
                out.stopped.append(key)
            records = lag.get(key, -1)
            if records < 0:
                out.unknown.append(key)
            else:
                out.total += int(records)
    return out


def metric_sum(instances: list[list[Sample]], name: str) -> float:
    return sum(s.value for samples in instances for s in samples if s.name == name)


def model_ids(instances: list[list[Sample]]) -> set:
    """The model ids of rotor_build_info."""
    return {s.labels.get("model_id", "") for samples in instances for s in samples
            if s.name == "rotor_build_info"}


def api_address(log_text: str) -> str | None:
    """The base URL of the API from `rotor serve`'s log (the last "API listening on" line), a
    wildcard address replaced by loopback; None before the line is there."""
    found = _LISTENING.findall(log_text)
    if not found:
        return None
    host, port = found[-1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    return f"http://{host}:{port}"


def default_log(config: Path) -> Path:
    """green.yaml -> green.log beside it."""
    return config.with_suffix(".log") if config.suffix in (".yaml", ".yml") else \
        config.with_name(config.name + ".log")


def eta_seconds(lag_before: int, lag_now: int, seconds: float, max_lag: int) -> float | None:
    """Seconds until the lag reaches `max_lag` at the rate it fell over the last `seconds`:
    0 when it is there; None when it did not fall."""
    if lag_now <= max_lag:
        return 0.0
    fell = lag_before - lag_now
    if seconds <= 0 or fell <= 0:
        return None
    return (lag_now - max_lag) / (fell / seconds)


# ---- processes and HTTP -------------------------------------------------------------------


def say(message: str) -> None:
    print(f"upgrade: {message}", flush=True)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str] | None:
    """(status, body), or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None


def pid_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, exited but not yet reaped by its parent,
    is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # No /proc: trust kill(0).
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def read_from(path: Path, offset: int) -> str:
    """The file's text from byte `offset` on (this run's part of an appended log)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class CommandFailed(Exception):
    pass


def run_shell(what: str, cmd: str, env: dict, timeout: float) -> None:
    """Runs `cmd` with sh -c; CommandFailed unless it exits 0 within `timeout`."""
    say(f"{what}: {cmd}")
    try:
        done = subprocess.run(cmd, shell=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{what} did not finish in {timeout:.0f} s: {cmd}") from None
    if done.returncode != 0:
        raise CommandFailed(f"{what} exited {done.returncode}: {cmd}")


class Green:
    """The green instance(s): started here (`proc`, `log`) or by a supervisor (`urls`)."""

    def __init__(self, args):
        self.args = args
        self.proc = None
        self.log = None
        self.log_from = 0
        self.urls = list(args.green_url or [])

    def start(self) -> None:
        args = self.args
        if args.green_start_cmd:
            try:
                run_shell("starting green", args.green_start_cmd, dict(os.environ),
                          args.cmd_timeout)
            except CommandFailed as e:
                raise UpgradeError(EXIT_GREEN_FAILED, str(e)) from None
            return
        env = dict(os.environ)
        if env.pop("ROTOR_STATE_DIR", None):
            say("ROTOR_STATE_DIR is set (blue's?); not passed to green, whose state.dir is "
                "its config's")
        self.log = Path(args.log) if args.log else default_log(Path(args.green_config))
        try:
            with open(self.log, "ab") as out:
                self.log_from = out.tell()
                self.proc = subprocess.Popen(
                    [args.rotor, "serve", "--config", args.green_config],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True)
        except OSError as e:
            raise UpgradeError(EXIT_USAGE, f"starting green: {e}") from None
        say(f"started green: {args.rotor} serve --config {args.green_config} (pid "
            f"{self.proc.pid}, log {self.log})")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise UpgradeError(EXIT_GREEN_FAILED,
                               f"green exited {self.proc.returncode} before it caught up; "
                               f"the end of {self.log}:\n"
                               f"{tail(read_from(self.log, self.log_from))}")

    def resolve_urls(self) -> bool:
        """Finds the API address in green's log; False while it is not there yet."""
        if self.urls:
            return True
        text = read_from(self.log, self.log_from)
        url = api_address(text)
        if url:
            self.urls = [url]
            say(f"green's API: {url}")
            return True
        if re.search(r"partition \d+: (assigned|stopped)", text):
            raise UpgradeError(EXIT_GREEN_FAILED, "green consumes but logged no API address: "
                               "set api.enabled: true in its config (the upgrade watches its "
                               "/readyz and /metrics)")
        return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def scrape(urls: list[str]) -> tuple[list[list[Sample]], list[tuple[str, int, str]]] | None:
    """Every instance's metrics and readiness, or None while one does not answer."""
    metrics, ready = [], []
    for url in urls:
        r = http_get(url + "/readyz")
        m = http_get(url + "/metrics")
        if r is None or m is None or m[0] != 200:
            return None
        metrics.append(parse_metrics(m[1]))
        ready.append((url, r[0], r[1]))
    return metrics, ready


def wait_caught_up(green: Green, args) -> list[list[Sample]]:
    """Polls green until it is ready and caught up for --polls polls in a row; returns the last
    scrape. UpgradeError(1) on an early exit, a stopped partition or the timeout."""
    deadline = time.monotonic() + args.timeout
    streak = 0
    last = None  # The last progress line's (time, events applied, lag).
    status = "green's API did not answer"
    warned = False
    while True:
        green.check_alive()
        if time.monotonic() > deadline:
            raise UpgradeError(EXIT_GREEN_FAILED,
                               f"green did not catch up within --timeout {args.timeout:.0f} s "
                               f"(last: {status})")
        got = scrape(green.urls) if green.resolve_urls() else None
        if got is None:
            time.sleep(args.interval)
            continue
        metrics, ready = got
        lag = lag_summary(metrics)
        if lag.stopped:
            reasons = "; ".join(body for _, status, body in ready if status != 200)
            raise UpgradeError(EXIT_GREEN_FAILED,
                               f"green stopped partition(s) {lag.stopped}: it cannot catch "
                               f"up (docs/daemon.md, The log must still hold what the state "
                               f"needs): {reasons[:2000]}")
        if lag.restoring and not warned:
            warned = True
            say("warning: green is restoring partitions (its group has committed offsets "
                "beyond its state, and it publishes nothing below them): is its "
                "kafka.group_id blue's? Green needs a group of its own")
        all_ready = all(status == 200 for _, status, _ in ready)
        ok = all_ready and lag.caught_up(args.max_lag, args.partitions)
        streak = streak + 1 if ok else 0
        now, events = time.monotonic(), metric_sum(metrics, "rotor_events_total")
        state = "ready" if all_ready else "not ready"
        if args.partitions and lag.partitions < args.partitions:
            state += f", owns {lag.partitions} of --partitions {args.partitions}"
        if lag.unknown:
            state += f", lag unknown for {len(lag.unknown)}"
        if lag.restoring:
            state += f", {len(lag.restoring)} restoring"
        status = f"lag {lag.total} records over {lag.partitions} partition(s) ({state})"
        if last is None or now - last[0] >= args.progress_interval or streak == args.polls:
            since = 0.0 if last is None else now - last[0]
            rate = (events - last[1]) / since if since > 0 else 0.0
            eta = eta_seconds(lag.total if last is None else last[2], lag.total, since,
                              args.max_lag)
            say(f"green {status}, {rate:.0f} events/s, {int(events)} events applied, ETA "
                f"{'?' if eta is None else f'{eta:.0f} s'}; caught up {streak}/{args.polls}")
            last = (now, events, lag.total)
        if streak >= args.polls:
            return metrics
        time.sleep(args.interval)


def stop_blue(args, env: dict) -> str:
    if args.blue_stop_cmd:
        try:
            run_shell("stopping blue", args.blue_stop_cmd, env, args.cmd_timeout)
        except CommandFailed as e:
            raise UpgradeError(EXIT_BLUE_RUNNING, f"{e}; blue may still be running") from None
        return "blue stopped (--blue-stop-cmd)"
    if args.blue_pid is None:
        return ("blue left running (neither --blue-pid nor --blue-stop-cmd): stop it once the "
                "rankers read green")
    say(f"stopping blue: SIGTERM to pid {args.blue_pid}")
    try:
        os.kill(args.blue_pid, signal.SIGTERM)
    except ProcessLookupError:
        return f"blue (pid {args.blue_pid}) had already exited"
    except PermissionError:
        raise UpgradeError(EXIT_BLUE_RUNNING, f"not allowed to signal blue (pid "
                           f"{args.blue_pid}): run as its user, or use --blue-stop-cmd; green "
                           f"serves and the switch ran") from None
    deadline = time.monotonic() + args.blue_stop_timeout
    while pid_running(args.blue_pid):
        if time.monotonic() > deadline:
            raise UpgradeError(EXIT_BLUE_RUNNING,
                               f"blue (pid {args.blue_pid}) still runs "
                               f"{args.blue_stop_timeout:.0f} s after SIGTERM; green serves and "
                               f"the switch ran: stop blue by hand")
        time.sleep(0.2)
    return f"blue (pid {args.blue_pid}) stopped"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Blue/green model upgrade of rotor serve (docs/operations.md, Upgrade).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--rotor", default="rotor", help="the rotor binary (default: rotor on PATH)")
    p.add_argument("--green-config", help="start `rotor serve --config GREEN_CONFIG` here")
    p.add_argument("--log", help="green's log (default: the config's path with .log)")
    p.add_argument("--green-start-cmd", help="instead: a command that starts green (systemd, "
                   "kubectl); needs --green-url")
    p.add_argument("--green-url", action="append",
                   help="green's API base URL, e.g. http://10.0.0.5:8470 (repeatable: one per "
                        "instance); default: from green's log")
    blue = p.add_mutually_exclusive_group()
    blue.add_argument("--blue-pid", type=int, help="SIGTERM this `rotor serve` and wait")
    blue.add_argument("--blue-stop-cmd", help="a command that stops blue")
    p.add_argument("--switch-cmd", help="the rankers' switch, run once green caught up")
    p.add_argument("--max-lag", type=int, default=1000,
                   help="caught up at or below this many records behind, summed over "
                        "partitions (default 1000)")
    p.add_argument("--partitions", type=int,
                   help="require green to own this many partitions in all (several instances)")
    p.add_argument("--polls", type=int, default=3, help="consecutive caught-up polls (3)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (1)")
    p.add_argument("--progress-interval", type=float, default=10.0,
                   help="seconds between progress lines (10)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="give up when green has not caught up after this many seconds (3600)")
    p.add_argument("--blue-stop-timeout", type=float, default=60.0,
                   help="seconds blue may take to exit after SIGTERM (60)")
    p.add_argument("--cmd-timeout", type=float, default=600.0,
                   help="seconds each command (start, switch, stop) may take (600)")
    p.add_argument("--keep-green", action="store_true",
                   help="leave green running when the upgrade fails")
    args = p.parse_args(argv)
    if bool(args.green_config) == bool(args.green_start_cmd):
        p.error("give one of --green-config and --green-start-cmd")
    if args.green_start_cmd and not args.green_url:
        p.error("--green-start-cmd needs --green-url (where green's API answers)")
    if args.green_config and not Path(args.green_config).is_file():
        p.error(f"--green-config {args.green_config}: no such file")
    if args.max_lag < 0 or args.polls < 1 or args.interval <= 0 or args.timeout <= 0:
        p.error("--max-lag must be >= 0, --polls >= 1, --interval and --timeout > 0")
    if args.blue_pid is not None:
        argv_blue = cmdline(args.blue_pid)
        if not pid_running(args.blue_pid):
            p.error(f"--blue-pid {args.blue_pid}: no such process")
        if argv_blue and "serve" not in argv_blue:
            p.error(f"--blue-pid {args.blue_pid} is not `rotor serve`: {' '.join(argv_blue)}")
    if args.green_url:
        args.green_url = [u.rstrip("/") for u in args.green_url]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    green = Green(args)
    try:
        green.start()
        metrics = wait_caught_up(green, args)
        ids = sorted(model_ids(metrics))
        if len(ids) != 1:
            raise UpgradeError(EXIT_GREEN_FAILED, f"green's instances serve {len(ids)} models "
                               f"({', '.join(ids) or 'none in rotor_build_info'}), not one")
    except (UpgradeError, KeyboardInterrupt) as e:
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        code = e.code if isinstance(e, UpgradeError) else EXIT_GREEN_FAILED
        left = ""
        if green.proc is not None:
            if green.proc.poll() is not None:
                left = "; green exited, its state kept"
            elif args.keep_green:
                left = f"; green (pid {green.proc.pid}) keeps running (--keep-green)"
            else:
                green.stop()
                left = "; green stopped (its state.dir is kept: a rerun resumes from it)"
        say(f"FAILED: {what}\nupgrade: blue was not touched and keeps serving{left}")
        return code
    green_pid = str(green.proc.pid) if green.proc is not None else ""
    say(f"green caught up in {time.monotonic() - began:.0f} s (model {ids[0]})")
    env = dict(os.environ, ROTOR_GREEN_MODEL_ID=ids[0],
               ROTOR_GREEN_API=" ".join(green.urls), ROTOR_GREEN_PID=green_pid,
               ROTOR_BLUE_PID="" if args.blue_pid is None else str(args.blue_pid))
    if args.switch_cmd:
        try:
            run_shell("switching the rankers", args.switch_cmd, env, args.cmd_timeout)
        except CommandFailed as e:
            say(f"FAILED: {e}\nupgrade: blue and green both keep running; switch the rankers "
                f"by hand, then stop blue")
            return EXIT_SWITCH_FAILED
    try:
        blue = stop_blue(args, env)
    except UpgradeError as e:
        say(f"FAILED: {e}")
        return e.code
    say(blue)
    say(f"done: green pid {green_pid or '-'}, API {' '.join(green.urls)}, model {ids[0]}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
