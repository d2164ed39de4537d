"""tools/upgrade.py's pure parts: the metrics it reads, the lag it sums, the API address it
finds in green's log, and its refusals of bad arguments.

The whole procedure (green started, caught up, the switch, blue stopped) runs against the real
broker in integration_tests/daemon_test.py --case upgrade (CTest kafka.daemon.upgrade).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "tools")


@pytest.fixture(scope="module")
def upgrade():
    sys.path.insert(0, TOOLS)
    try:
        yield importlib.import_module("upgrade")
    finally:
        sys.path.remove(TOOLS)


# As `rotor serve` writes it (docs/daemon.md, Metrics), abridged: one instance owning
# partitions 0-2 of `ev` (partition 3 moved away: phase -1), one of them with no lag yet.
METRICS = """\
# HELP rotor_events_total Events applied to user state (re-applied ones too).
# TYPE rotor_events_total counter
rotor_events_total 3120
# HELP rotor_build_info 1, labelled with rotor's version, the SIMD target and the model's id.
# TYPE rotor_build_info gauge
rotor_build_info{version="0.1.0",simd_target="AVX3",model_id="ed1f9a0a"} 1
# TYPE rotor_consumer_lag gauge
rotor_consumer_lag{topic="ev",partition="0"} 120
rotor_consumer_lag{topic="ev",partition="1"} 7
rotor_consumer_lag{topic="ev",partition="2"} -1
rotor_consumer_lag{topic="ev",partition="3"} 0
# TYPE rotor_partition_phase gauge
rotor_partition_phase{topic="ev",partition="0"} 1
rotor_partition_phase{topic="ev",partition="1"} 1
rotor_partition_phase{topic="ev",partition="2"} 1
rotor_partition_phase{topic="ev",partition="3"} -1
# TYPE rotor_batch_seconds histogram
rotor_batch_seconds_bucket{le="0.0005"} 0
rotor_batch_seconds_bucket{le="+Inf"} 376
rotor_batch_seconds_sum 1.25e+00
rotor_batch_seconds_count 376
rotor_dead_letters_total{reason="say \\"hi\\"\\\\"} 2
"""


def phases(partitions, topic="ev"):
    """The metrics text of one instance owning `partitions`: {partition: (phase, lag)}."""
    text = "".join(f'rotor_partition_phase{{topic="{topic}",partition="{p}"}} {phase}\n'
                   f'rotor_consumer_lag{{topic="{topic}",partition="{p}"}} {lag}\n'
                   for p, (phase, lag) in partitions.items())
    return text


def test_parse_metrics_reads_samples_labels_and_values(upgrade):
    samples = upgrade.parse_metrics(METRICS)
    assert len(samples) == 15
    by = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert by[("rotor_events_total", ())] == 3120
    assert by[("rotor_consumer_lag", (("partition", "2"), ("topic", "ev")))] == -1
    assert by[("rotor_batch_seconds_bucket", (("le", "+Inf"),))] == 376
    assert by[("rotor_batch_seconds_sum", ())] == 1.25
    # Escaped quotes and backslashes in a label value.
    assert by[("rotor_dead_letters_total", (("reason", 'say "hi"\\'),))] == 2
    assert upgrade.model_ids([samples]) == {"ed1f9a0a"}
    assert upgrade.metric_sum([samples, samples], "rotor_events_total") == 6240


def test_parse_metrics_refuses_what_is_not_a_sample(upgrade):
    with pytest.raises(ValueError, match="not a metric sample"):
        upgrade.parse_metrics("<html>502 Bad Gateway</html>\n")
    with pytest.raises(ValueError, match="not a metric value"):
        upgrade.parse_metrics("rotor_ready yes\n")


def test_lag_sums_owned_partitions_and_knows_what_is_unknown(upgrade):
    lag = upgrade.lag_summary([upgrade.parse_metrics(METRICS)])
    # Partition 3 moved away (phase -1): not counted; partition 2 has no lag yet.
    assert lag.partitions == 3
    assert lag.total == 127
    assert lag.unknown == [("ev", "2")]
    assert not lag.caught_up(max_lag=1000)  # Unknown is never caught up.
    known = upgrade.lag_summary([upgrade.parse_metrics(phases({0: (1, 120), 1: (1, 7)}))])
    assert known.caught_up(max_lag=127)
    assert not known.caught_up(max_lag=126)
    assert not known.caught_up(max_lag=1000, partitions=4)  # Owns 2 of 4.


def test_lag_over_several_instances_and_phases(upgrade):
    a = upgrade.parse_metrics(phases({0: (1, 5), 1: (0, 300), 2: (-1, 0)}))
    b = upgrade.parse_metrics(phases({2: (1, 10), 3: (2, -1)}))
    lag = upgrade.lag_summary([a, b])
    assert lag.partitions == 4  # Partition 2 counts once, where it is owned.
    assert lag.total == 315
    assert lag.restoring == [("ev", "1")]
    assert lag.stopped == [("ev", "3")]
    assert not lag.caught_up(max_lag=10**6)
    # Nothing owned yet (before the group's assignment): not caught up, whatever the lag.
    unassigned = upgrade.parse_metrics(METRICS.split("# TYPE rotor_consumer")[0])
    assert not upgrade.lag_summary([unassigned]).caught_up(max_lag=10**6)


def test_api_address_from_the_serve_log(upgrade):
    log = ("[2026-12-04 22:10:53.768] [info] serving model 503c98e8ecba (siren), ...\n"
           "[2026-12-04 22:10:53.770] [info] rotor serve: API listening on 127.0.0.1:37399\n")
    assert upgrade.api_address(log) == "http://127.0.0.1:37399"
    assert upgrade.api_address("rotor serve: API listening on 0.0.0.0:8470") == \
        "http://127.0.0.1:8470"
    assert upgrade.api_address("rotor serve: API listening on [::]:8470") == "http://[::1]:8470"
    assert upgrade.api_address("rotor serve: API listening on [fe80::1]:9") == "http://[fe80::1]:9"
    # A log appended to by an earlier run: the last line counts.
    assert upgrade.api_address(log + "rotor serve: API listening on 10.1.2.3:1\n") == \
        "http://10.1.2.3:1"
    assert upgrade.api_address("partition 0: assigned, resuming at the beginning") is None


def test_default_log_and_eta(upgrade):
    from pathlib import Path
    assert upgrade.default_log(Path("/etc/rotor/green.yaml")) == Path("/etc/rotor/green.log")
    assert upgrade.default_log(Path("green.conf")) == Path("green.conf.log")
    assert upgrade.eta_seconds(5000, 3000, 2.0, 0) == pytest.approx(3.0)  # 1000/s.
    assert upgrade.eta_seconds(5000, 3000, 2.0, 1000) == pytest.approx(2.0)
    assert upgrade.eta_seconds(3000, 3000, 2.0, 0) is None  # Not falling.
    assert upgrade.eta_seconds(3000, 40, 0.0, 50) == 0.0  # There already.


def test_pid_running_takes_a_zombie_for_exited(upgrade):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert upgrade.pid_running(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while upgrade.pid_running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Killed and not yet reaped (a zombie, as blue is for the test that started it).
        assert not upgrade.pid_running(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not upgrade.pid_running(child.pid)


def test_arguments_are_checked_before_anything_starts(upgrade, tmp_path, capsys):
    config = tmp_path / "green.yaml"
    config.write_text("model: {}\n")
    refusals = [
        ([], "one of --green-config and --green-start-cmd"),
        (["--green-config", str(tmp_path / "none.yaml")], "no such file"),
        (["--green-start-cmd", "true"], "needs --green-url"),
        (["--green-config", str(config), "--blue-pid", str(os.getpid())], "is not `rotor serve`"),
        (["--green-config", str(config), "--max-lag", "-1"], "--max-lag must be >= 0"),
        (["--green-config", str(config), "--blue-pid", "1", "--blue-stop-cmd", "true"],
         "not allowed with"),
    ]
    for argv, message in refusals:
        with pytest.raises(SystemExit) as exit:
            upgrade.parse_args(argv)
        assert exit.value.code == 2
        assert message in capsys.readouterr().err
