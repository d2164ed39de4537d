from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import random_events, small_config
from sirenrope.config import ConfigError, ModelConfig
from sirenrope.features import EventError, featurize, fnv1a64, time_delta_units, time_features


def test_fnv1a64_known_vectors():
    assert fnv1a64("") == 0xCBF29CE484222325
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert fnv1a64("foobar") == 0x85944171F73967E8


def test_time_features_phases_and_offset():
    cfg = small_config(t_ref_ms=0, t_scale_s=86400.0)
    day = 86_400_000
    ts = np.array([0, day // 4, day // 2, 7 * day, -day // 4, 3 * day + 123], dtype=np.int64)
    tf = time_features(ts, cfg).astype(np.float64)
    assert tf.dtype == np.float64 and time_features(ts, cfg).dtype == np.float32
    assert np.allclose(tf[0], [1, 0, 1, 0, 0], atol=1e-7)
    assert np.allclose(tf[1, :2], [0, 1], atol=1e-7)  # 06:00 UTC: a quarter turn
    assert np.allclose(tf[2, :2], [-1, 0], atol=1e-7)
    assert np.allclose(tf[3], [1, 0, 1, 0, 7], atol=1e-6)  # one week later
    assert np.allclose(tf[4, :2], [0, -1], atol=1e-7)  # 18:00 the day before 1970: floored mod
    w = 2 * math.pi * (3 * day + 123) / (7 * day)
    assert np.allclose(tf[5, 2:4], [math.cos(w), math.sin(w)], atol=1e-7)


def test_phases_keep_millisecond_resolution_at_current_times():
    """float32 Unix seconds are quantized to 128 s; our phases are not."""
    cfg = small_config()
    t = 1767571200000 + 37 * 86_400_000 + 5_000
    a, b = time_features(np.array([t, t + 1000]), cfg)
    assert abs(float(a[1]) - float(b[1])) > 5e-5  # one second apart is visible


def test_time_delta_units_are_hours_since_reference():
    cfg = small_config(t_ref_ms=1000, time_unit_s=3600.0)
    assert time_delta_units(np.array([1000 + 7_200_000]), cfg)[0] == 2.0


def test_vocab_hash_and_unknown_rows():
    cfg = small_config()
    ev = random_events(1)[0]
    ev["attrs"] = {"topic": "sports", "surface": "bogus", "publisher": "pub7"}
    arr = featurize([ev], cfg)
    topics = cfg.schema.categorical[0].values
    assert arr.cat[0, 0] == topics.index("sports") + 1
    assert arr.cat[0, 1] == 0  # unknown vocab value
    assert arr.cat[0, 2] == 1 + fnv1a64("pub7") % 256
    del ev["attrs"]
    assert featurize([ev], cfg).cat.tolist() == [[0, 0, 0]]


def test_action_transforms_defaults_and_labels():
    cfg = small_config()
    ev = random_events(1)[0]
    ev["action"] = {"click": 1, "like": 0, "dwell_s": 9.0}  # share missing -> default 0
    arr = featurize([ev], cfg)
    assert arr.actions[0].tolist() == pytest.approx([1.0, 0.0, 0.0, math.log1p(9.0)])
    assert arr.labels[0].tolist() == [1.0, 0.0, 0.0]
    ev["action"] = {"click": 3.5}
    assert featurize([ev], cfg).actions[0, 0] == 1.0  # binary


def test_item_ids_hash_into_the_table():
    cfg = small_config()
    cfg.schema.item.kind, cfg.schema.item.buckets = "id", 100
    ev = random_events(1)[0]
    assert featurize([ev], cfg).item[0] == 1 + fnv1a64(ev["item"]["id"]) % 100


@pytest.mark.parametrize("mutate,msg", [
    (lambda e: e.update(ts_ms="123"), r"ts_ms: expected an integer"),
    (lambda e: e.update(ts_ms=True), r"ts_ms: expected an integer"),
    (lambda e: e.update(ts_ms=1.5), r"ts_ms: expected an integer"),
    (lambda e: e.update(ts_ms=2**63), r"ts_ms: out of range"),
    (lambda e: e.pop("item"), r"item: expected an object"),
    (lambda e: e["item"].update(features=[1.0] * 7), r"item.features: expected 8 numbers"),
    (lambda e: e["item"]["features"].__setitem__(2, float("nan")), r"features\[2\]: not finite"),
    (lambda e: e["item"]["features"].__setitem__(0, float("inf")), r"features\[0\]: not finite"),
    (lambda e: e["item"]["features"].__setitem__(1, 1e9), r"features\[1\]: .* exceeds"),
    (lambda e: e["item"]["features"].__setitem__(3, "x"), r"features\[3\]: expected a number"),
    (lambda e: e["action"].update(click=None), r"action.click: expected a number"),
    (lambda e: e["action"].update(dwell_s=float("nan")), r"action.dwell_s: not finite"),
    (lambda e: e.update(action=[1]), r"action: expected an object"),
    (lambda e: e.update(attrs="sports"), r"attrs: expected an object"),
])
def test_invalid_events_are_rejected_with_the_field(mutate, msg):
    ev = random_events(1)[0]
    mutate(ev)
    with pytest.raises(EventError, match=msg):
        featurize([ev], small_config())


@pytest.mark.parametrize("mutate,msg,code", [
    (lambda e: e["attrs"].update(topic=7), r"attrs.topic: expected a string, got a number",
     "wrong_type"),
    (lambda e: e["attrs"].update(surface=None), r"attrs.surface: expected a string, got null",
     "wrong_type"),
    (lambda e: e["attrs"].update(extra={"a": 1}), r"attrs.extra: expected a string, got an object",
     "wrong_type"),
    (lambda e: e["item"].update(id=12345), r"item.id: expected a string, got a number",
     "wrong_type"),
    (lambda e: e["item"].update(id="i\x00"), r"item.id: contains control character U\+0000",
     "invalid_value"),
])
@pytest.mark.parametrize("need_actions", [True, False])
def test_values_of_the_wrong_type_are_refused_not_coerced(mutate, msg, code, need_actions):
    """Candidates too: a number where a string belongs is an error, not the unknown row."""
    ev = random_events(1)[0]
    mutate(ev)
    with pytest.raises(EventError, match=msg) as err:
        featurize([ev], small_config(), need_actions=need_actions)
    assert err.value.code == code


@pytest.mark.parametrize("ts_ms,code", [
    (-1, "ts_before_epoch"), (-(2**62), "ts_before_epoch"),
    (7_258_118_400_000, "ts_out_of_range"), (2**62, "ts_out_of_range"),
    (2**63, "ts_out_of_range"),
])
def test_timestamps_outside_1970_to_2200_are_refused_with_their_reason(ts_ms, code):
    """Beyond [1970, 2200) the float32 angle networks of two implementations do not agree:
    the reference refuses what the daemon dead-letters, with the same reason."""
    ev = random_events(1)[0]
    ev["ts_ms"] = ts_ms
    with pytest.raises(EventError, match=r"ts_ms: out of range \[1970-01-01, 2200-01-01\)") as err:
        featurize([ev], small_config())
    assert err.value.code == code
    ev["ts_ms"] = 7_258_118_400_000 - 1  # the last millisecond of 2199 is accepted
    assert featurize([ev], small_config()).ts_ms[0] == ev["ts_ms"]


def test_ids_are_checked_only_when_asked():
    ev = random_events(1)[0]
    ev["user_id"] = "u\n1"
    featurize([ev], small_config())  # candidates and plain arrays need no ids
    with pytest.raises(EventError, match=r"event\[0\].user_id: contains control character U\+000A"):
        featurize([ev], small_config(), check_ids=True)
    del ev["event_id"]
    with pytest.raises(EventError, match=r"event\[0\].event_id: missing") as err:
        featurize([ev], small_config(), check_ids=True)
    assert err.value.code == "missing_field"


def test_config_json_round_trip_and_strict_parsing():
    cfg = small_config(variant="time_linear", window=33)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_json() == cfg.to_json()
    with pytest.raises(ConfigError, match=r"config.window: expected a integer"):
        ModelConfig.from_json(cfg.to_json().replace('"window":33', '"window":33.5'))
    with pytest.raises(ConfigError, match=r"config.schema.actions\[0\].name: missing"):
        d = cfg.to_dict()
        del d["schema"]["actions"][0]["name"]
        ModelConfig.from_dict(d)
