"""From event JSON objects (DESIGN section 4) to the model's input arrays.

This module is the reference for how the daemon featurises an event; the C++ encoder must
produce the same numbers. The rules:

- time: ``ts_ms`` is an integer count of milliseconds since the Unix epoch (UTC), within
  [TS_MIN_MS, TS_END_MS) = [1970-01-01, 2200-01-01): beyond it the float32 angle networks of
  two implementations no longer agree, so an event outside is refused (``ts_before_epoch``
  below it, ``ts_out_of_range`` after it, the daemon's dead-letter reasons). The daily
  phase is ``2*pi * (ts_ms mod 86400000) / 86400000`` with a floored modulo, likewise weekly
  with 604800000; both and their cos/sin are computed in float64, then cast to float32.
  ``T~ = float64(ts_ms - t_ref_ms) / (1000 * t_scale_s)``, cast to float32.
- item: ``features`` (kind=features) must have exactly ``dim`` finite values with
  ``|x| <= feature_abs_max``; kind=id hashes ``item.id`` to row 1 + fnv1a64 % buckets.
- action: each schema action takes ``action[name]`` or its default, then ``identity``,
  ``log1p(max(v, 0))`` or ``binary`` (v > 0). Labels are ``action[label.action] > threshold``.
- attrs: vocab fields map the i-th value to row i+1, hash fields to 1 + fnv1a64 % buckets,
  missing or unknown values to row 0.
- types: every value the input contract (DESIGN section 4) types is checked, used or not: a
  number or null where a string belongs is an error, never an unknown value. Ids carry no
  control characters. ``featurize`` lists the checks and their order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .config import InputSchema, ModelConfig

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# The accepted ts_ms: [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z) (encoders/featurizer.h).
TS_MIN_MS = 0
TS_END_MS = 7_258_118_400_000
TS_RANGE_ERROR = "out of range [1970-01-01, 2200-01-01)"
TWO_PI = 2.0 * math.pi

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


class EventError(ValueError):
    """An event violates the input contract; the message is the dead-letter detail.

    ``code`` is the dead-letter reason the daemon gives the same event (docs/daemon.md):
    ``wrong_type`` for a value of the wrong JSON type where the daemon's parser refuses it,
    ``missing_field``, ``invalid_value``, ``ts_before_epoch`` / ``ts_out_of_range`` for a
    ts_ms outside [TS_MIN_MS, TS_END_MS), or ``schema`` for what the bundle's schema refuses.
    """

    def __init__(self, message: str, code: str = "schema"):
        super().__init__(message)
        self.code = code


def fnv1a64(text: str) -> int:
    """64-bit FNV-1a of the UTF-8 bytes: the hash shared by Python and C++ for id tables."""
    h = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def time_features(ts_ms: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """[..., 5] float32: cos/sin of the daily phase, cos/sin of the weekly phase, T~."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    day = TWO_PI * (np.mod(ts, DAY_MS).astype(np.float64) / DAY_MS)
    week = TWO_PI * (np.mod(ts, WEEK_MS).astype(np.float64) / WEEK_MS)
    t_tilde = (ts - np.int64(cfg.t_ref_ms)).astype(np.float64) / (1000.0 * cfg.t_scale_s)
    out = np.stack([np.cos(day), np.sin(day), np.cos(week), np.sin(week), t_tilde], axis=-1)
    return out.astype(np.float32)


def time_delta_units(ts_ms: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """float64 time since t_ref in ``time_unit_s`` units (the time_linear variant's delta_t)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    return (ts - np.int64(cfg.t_ref_ms)).astype(np.float64) / (1000.0 * cfg.time_unit_s)


@dataclass
class EventArrays:
    """One user's events (or one set of candidates) as arrays, one row per event."""

    item: np.ndarray  # [S, d_item] float32 (kind=features) or [S] int64 rows (kind=id)
    actions: np.ndarray  # [S, n_actions] float32, transformed
    labels: np.ndarray  # [S, n_labels] float32 0/1
    cat: np.ndarray  # [S, n_cat] int64 table rows
    ts_ms: np.ndarray  # [S] int64

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def slice(self, a: int, b: int) -> "EventArrays":
        return EventArrays(self.item[a:b], self.actions[a:b], self.labels[a:b], self.cat[a:b],
                           self.ts_ms[a:b])


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EventError(f"{where}: expected a number")
    f = float(v)
    if not math.isfinite(f):
        raise EventError(f"{where}: not finite")
    return f


def category_row(schema: InputSchema, field_index: int, value: Any) -> int:
    spec = schema.categorical[field_index]
    if not isinstance(value, str):
        return 0
    if spec.kind == "vocab":
        try:
            return spec.values.index(value) + 1
        except ValueError:
            return 0
    return 1 + fnv1a64(value) % spec.buckets


MAX_ID_BYTES = 256  # Longest event_id / user_id, in UTF-8 bytes (the daemon's kMaxIdBytes).


def _json_type(v: Any) -> str:
    """The JSON type of a json.loads value, as the daemon's messages name it."""
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _check_no_control(text: str, where: str) -> None:
    """Ids (event_id, user_id, item.id) carry no control characters (U+0000..U+001F, U+007F):
    they end up in keys, logs and dead-letter headers, where a NUL or a newline truncates or
    forges lines."""
    for c in text:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise EventError(f"{where}: contains control character U+{ord(c):04X}",
                             "invalid_value")


def _check_id(ev: dict, name: str, where: str) -> None:
    """event_id / user_id as the daemon's parser checks them, before anything else."""
    if name not in ev:
        raise EventError(f"{where}.{name}: missing", "missing_field")
    v = ev[name]
    if not isinstance(v, str):
        raise EventError(f"{where}.{name}: expected a string", "wrong_type")
    if not v:
        raise EventError(f"{where}.{name}: empty", "invalid_value")
    # surrogatepass: json.loads accepts lone surrogates (the daemon refuses them as bad JSON).
    size = len(v.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        raise EventError(f"{where}.{name}: {size} bytes, longer than {MAX_ID_BYTES}",
                         "invalid_value")
    _check_no_control(v, f"{where}.{name}")


def featurize(events: Sequence[dict], cfg: ModelConfig, need_actions: bool = True,
              check_ids: bool = False) -> EventArrays:
    """Validate and convert events; raises EventError naming the event and field.

    ``need_actions=False`` is for candidates, whose actions are what the model predicts.
    ``check_ids=True`` first checks ``event_id`` and ``user_id`` as the daemon does for the
    input topic (present, strings, non-empty, at most MAX_ID_BYTES, no control characters);
    events read from an input log (train.read_histories, the shared parser cases) want it,
    candidates need no ids.

    Every value DESIGN section 4 types is checked whether or not the schema uses it: a present
    ``item.id`` is a string without control characters, a present ``item.features`` of a
    kind=id item an array of numbers, every ``action`` value a number (when actions are
    needed), every ``attrs`` value a string. A value of the wrong type is an error
    (``wrong_type``), never coerced or ignored. Checks run in this order, and the first
    failing one is reported: ts_ms, item, item.id, item.features (or the kind=id id), the
    schema's actions in schema order, the other actions, attrs.
    """
    s = cfg.schema
    n = len(events)
    if s.item.kind == "features":
        item = np.zeros((n, s.item.dim), dtype=np.float32)
    else:
        item = np.zeros((n,), dtype=np.int64)
    actions = np.zeros((n, cfg.n_actions), dtype=np.float32)
    labels = np.zeros((n, cfg.n_labels), dtype=np.float32)
    cat = np.zeros((n, len(s.categorical)), dtype=np.int64)
    ts = np.zeros((n,), dtype=np.int64)
    for r, ev in enumerate(events):
        where = f"event[{r}]"
        if not isinstance(ev, dict):
            raise EventError(f"{where}: expected an object", "not_object")
        if check_ids:
            _check_id(ev, "event_id", where)
            _check_id(ev, "user_id", where)
        t = ev.get("ts_ms")
        if isinstance(t, bool) or not isinstance(t, int):
            raise EventError(f"{where}.ts_ms: expected an integer",
                             "wrong_type" if "ts_ms" in ev else "missing_field")
        if not TS_MIN_MS <= t < TS_END_MS:
            raise EventError(f"{where}.ts_ms: {TS_RANGE_ERROR}",
                             "ts_before_epoch" if t < TS_MIN_MS else "ts_out_of_range")
        ts[r] = t
        it = ev.get("item")
        if not isinstance(it, dict):
            raise EventError(f"{where}.item: expected an object",
                             "wrong_type" if "item" in ev else "schema")
        if "id" in it:
            if not isinstance(it["id"], str):
                raise EventError(f"{where}.item.id: expected a string, got "
                                 f"{_json_type(it['id'])}", "wrong_type")
            _check_no_control(it["id"], f"{where}.item.id")
        if s.item.kind == "features":
            feats = it.get("features")
            if not isinstance(feats, list) or len(feats) != s.item.dim:
                raise EventError(f"{where}.item.features: expected {s.item.dim} numbers")
            for j, v in enumerate(feats):
                f = _number(v, f"{where}.item.features[{j}]")
                if abs(f) > s.feature_abs_max:
                    raise EventError(f"{where}.item.features[{j}]: |{f}| exceeds "
                                     f"feature_abs_max {s.feature_abs_max}")
                item[r, j] = f
        else:
            iid = it.get("id")
            if not isinstance(iid, str):
                raise EventError(f"{where}.item.id: expected a string")
            if "features" in it:  # Unused by kind=id, but typed all the same.
                feats = it["features"]
                if not isinstance(feats, list):
                    raise EventError(f"{where}.item.features: expected an array, got "
                                     f"{_json_type(feats)}", "wrong_type")
                for j, v in enumerate(feats):
                    if not _is_number(v):
                        raise EventError(f"{where}.item.features[{j}]: expected a number, got "
                                         f"{_json_type(v)}", "wrong_type")
            item[r] = 1 + fnv1a64(iid) % s.item.buckets
        act = ev.get("action", {})
        if need_actions:
            if not isinstance(act, dict):
                raise EventError(f"{where}.action: expected an object")
            for j, a in enumerate(s.actions):
                v = _number(act[a.name], f"{where}.action.{a.name}") if a.name in act else a.default
                if abs(v) > s.feature_abs_max:
                    raise EventError(f"{where}.action.{a.name}: |{v}| exceeds "
                                     f"feature_abs_max {s.feature_abs_max}")
                actions[r, j] = _transform(a.transform, v)
            schema_actions = {a.name for a in s.actions}
            for name, v in act.items():
                if name not in schema_actions and not _is_number(v):
                    raise EventError(f"{where}.action.{name}: expected a number, got "
                                     f"{_json_type(v)}", "wrong_type")
            raw = {a.name: (float(act[a.name]) if a.name in act else a.default) for a in s.actions}
            for j, lab in enumerate(s.labels):
                labels[r, j] = 1.0 if raw[lab.action] > lab.threshold else 0.0
        attrs = ev.get("attrs", {})
        if not isinstance(attrs, dict):
            raise EventError(f"{where}.attrs: expected an object")
        for name, v in attrs.items():
            if not isinstance(v, str):
                raise EventError(f"{where}.attrs.{name}: expected a string, got {_json_type(v)}",
                                 "wrong_type")
        for j, spec in enumerate(s.categorical):
            cat[r, j] = category_row(s, j, attrs.get(spec.name))
    return EventArrays(item, actions, labels, cat, ts)


def _transform(kind: str, v: float) -> float:
    if kind == "identity":
        return v
    if kind == "log1p":
        return math.log1p(max(v, 0.0))
    return 1.0 if v > 0 else 0.0
