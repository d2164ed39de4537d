"""Model configuration and input schema: the JSON that travels in a bundle's metadata.

Every field is validated by `ModelConfig.from_dict`, which raises `ConfigError` naming the
field (``config.schema.item.dim: must be a positive integer, got 0``). The daemon's C++ loader
validates the same fields with the same names, so an error reads the same on both sides.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1

VARIANTS = ("none", "ordinal", "time_linear", "siren", "siren_sine_only", "siren_dnn_only")
SIREN_VARIANTS = ("siren", "siren_sine_only", "siren_dnn_only")
ACTION_TRANSFORMS = ("identity", "log1p", "binary")
ITEM_KINDS = ("features", "id")
CATEGORICAL_KINDS = ("vocab", "hash")

# Width of the time part of the angle-network input: daily cos/sin, weekly cos/sin, T~.
N_TIME_FEATURES = 5
ANGLE_TIME_INPUTS = ("all", "offset")
# Fields of offline ablations, with their defaults (ModelConfig.to_dict, bundle.bundle_bytes).
OFFLINE_ONLY = {"angle_time_inputs": "all", "time_in_item": False}
# Fields a bundle's config leaves out at these values, so that bundles made before the field
# existed stay the same bytes (and model ids); a reader takes a missing one as this value.
OMITTED_AT = {**OFFLINE_ONLY, "act_proj": False}
# Width of the request context fed to the head: daily cos/sin, weekly cos/sin.
N_REQUEST_FEATURES = 4


class ConfigError(ValueError):
    """A config or schema field is missing, has the wrong type, or is out of range."""


@dataclass
class ItemSpec:
    """How an event's item becomes a vector: dense features, or an id hashed into a table."""

    kind: str = "features"
    dim: int = 8  # feature count (kind=features) or embedding width (kind=id)
    buckets: int = 0  # hash buckets (kind=id); row 0 of the table is the unknown id


@dataclass
class ActionSpec:
    """One numeric action field; its transform is applied before the action MLP."""

    name: str
    transform: str = "identity"
    default: float = 0.0


@dataclass
class CategoricalSpec:
    """One categorical attribute fed to the angle networks through an embedding table.

    Row 0 of the table is reserved for missing and unknown values. ``vocab`` maps the i-th
    listed value to row i+1; ``hash`` maps a value to row 1 + fnv1a64(utf8) % buckets.
    """

    name: str
    kind: str = "vocab"
    dim: int = 4
    values: list[str] = field(default_factory=list)
    buckets: int = 0

    @property
    def rows(self) -> int:
        return 1 + (len(self.values) if self.kind == "vocab" else self.buckets)


@dataclass
class LabelSpec:
    """A binary engagement label: 1 when ``action[action] > threshold``."""

    name: str
    action: str
    threshold: float = 0.0


@dataclass
class InputSchema:
    item: ItemSpec = field(default_factory=ItemSpec)
    actions: list[ActionSpec] = field(default_factory=list)
    categorical: list[CategoricalSpec] = field(default_factory=list)
    labels: list[LabelSpec] = field(default_factory=list)
    # Item features and action values with |x| above this are rejected as out of range.
    feature_abs_max: float = 1.0e4


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model's computation from its tensors."""

    variant: str = "siren"
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_angle: int = 4
    angle_hidden: int = 16
    w0: float = 10.0
    rope_base: float = 1.0e5
    t_ref_ms: int = 1767571200000  # 2026-01-05T00:00:00Z
    t_scale_s: float = 365.0 * 86400.0
    time_unit_s: float = 3600.0  # time_linear only: delta_t is measured in this unit
    logit_scale: float = 0.025
    skip_scale: float = 0.1
    window: int = 64
    action_hidden: int = 64
    head_hidden: int = 64
    ffn_mult: int = 4
    layer_norm_eps: float = 1.0e-5
    reverse_order: bool = False  # offline ablation only (breaks cache exactness)
    # The action attention's own Q/K/V/O projections (the paper's demo code): Q = rot(Wq h),
    # K = rot(Wk h), V = Wv a, context Wo(attention). False: Q = K = rot(h), V = a, no Wo
    # (bundles made before the field; served by the daemon either way).
    act_proj: bool = False
    # Offline ablations of the study (OFFLINE_ONLY: left out of a bundle at their defaults,
    # refused by the exporter otherwise; the daemon serves neither):
    # "all" feeds the angle networks the daily and weekly cos/sin and T~; "offset" only T~
    # (the study's "without cyclical features").
    angle_time_inputs: str = "all"
    # The 5 time features concatenated to the item vector before its projection
    # (the study's "timestamps as input features instead of rotation", with variant ordinal).
    time_in_item: bool = False
    schema: InputSchema = field(default_factory=InputSchema)
    format_version: int = FORMAT_VERSION

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_pairs(self) -> int:
        return self.d_head // 2

    @property
    def n_blocks(self) -> int:
        """Attention blocks with a K/V cache: the L layers plus the action attention."""
        return self.n_layers + 1

    @property
    def angle_in_dim(self) -> int:
        return (
            (N_TIME_FEATURES if self.angle_time_inputs == "all" else 1)
            + (1 if self.reverse_order else 0)
            + sum(c.dim for c in self.schema.categorical)
        )

    @property
    def n_actions(self) -> int:
        return len(self.schema.actions)

    @property
    def n_labels(self) -> int:
        return len(self.schema.labels)

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, except those of OMITTED_AT at their values there: a bundle's config
        holds what the daemon serves, and bundles made before those fields stay the same
        bytes (the same model ids)."""
        d = dataclasses.asdict(self)
        for name, default in OMITTED_AT.items():
            if d[name] == default:
                del d[name]
        return d

    def offline_only(self) -> list[str]:
        """The offline-only fields set away from their defaults (none for a servable model)."""
        return [n for n, default in OFFLINE_ONLY.items() if getattr(self, n) != default]

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, so bundles are byte-reproducible."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_dict(d: Any) -> "ModelConfig":
        cfg = _parse_model_config(d)
        cfg.validate()
        return cfg

    @staticmethod
    def from_json(text: str) -> "ModelConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: not valid JSON: {e}") from None
        return ModelConfig.from_dict(d)

    def validate(self) -> None:
        """Check ranges and cross-field rules; raises ConfigError naming the field."""
        if self.format_version != FORMAT_VERSION:
            _fail("format_version", f"unsupported version {self.format_version}, this reader "
                  f"understands {FORMAT_VERSION}")
        if self.variant not in VARIANTS:
            _fail("variant", f"unknown variant {self.variant!r}, expected one of {list(VARIANTS)}")
        if self.angle_time_inputs not in ANGLE_TIME_INPUTS:
            _fail("angle_time_inputs", f"unknown value {self.angle_time_inputs!r}, expected one "
                  f"of {list(ANGLE_TIME_INPUTS)}")
        for name in ("d_model", "n_heads", "n_layers", "d_angle", "angle_hidden", "window",
                     "action_hidden", "head_hidden", "ffn_mult"):
            if getattr(self, name) <= 0:
                _fail(name, f"must be positive, got {getattr(self, name)}")
        # The C++ loader's caps (encoders/model_config.h, kMaxWindow and kMaxWindowBytes): a
        # bundle the daemon would refuse is refused at export, with the same message.
        if self.window > MAX_WINDOW:
            _fail("window", f"must be at most {MAX_WINDOW}, got {self.window}")
        window_bytes = self.window * self.n_blocks * 2 * self.d_model * 4
        if window_bytes > MAX_WINDOW_BYTES:
            _fail("window", f"one user's K/V window of {self.window} rows x {self.n_blocks} "
                  f"blocks x 2 x d_model {self.d_model} x 4 bytes = {window_bytes} bytes "
                  f"exceeds the {MAX_WINDOW_BYTES}-byte limit")
        if self.d_model % self.n_heads != 0:
            _fail("n_heads", f"{self.n_heads} does not divide d_model={self.d_model}")
        if self.d_head % 2 != 0:
            _fail("n_heads", f"head dim d_model/n_heads={self.d_head} must be even")
        if self.n_pairs % self.d_angle != 0:
            _fail("d_angle", f"{self.d_angle} does not divide the pair count "
                  f"P=d_head/2={self.n_pairs}")
        for name in ("w0", "t_scale_s", "time_unit_s", "logit_scale", "skip_scale",
                     "layer_norm_eps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                _fail(name, f"must be a finite positive number, got {v}")
        if not (math.isfinite(self.rope_base) and self.rope_base > 1):
            _fail("rope_base", f"must be a finite number > 1, got {self.rope_base}")
        if not (-(2**53) < self.t_ref_ms < 2**53):
            _fail("t_ref_ms", f"out of range: {self.t_ref_ms}")
        _validate_schema(self.schema)


# One user's K/V window: at most this many rows, and this many bytes (float32 K and V of every
# block), as encoders/model_config.h caps them.
MAX_WINDOW = 65536
MAX_WINDOW_BYTES = 256 << 20


def _fail(path: str, msg: str) -> None:
    raise ConfigError(f"config.{path}: {msg}")


def _validate_schema(s: InputSchema) -> None:
    if s.item.kind not in ITEM_KINDS:
        _fail("schema.item.kind", f"unknown kind {s.item.kind!r}, expected one of {list(ITEM_KINDS)}")
    if s.item.dim <= 0:
        _fail("schema.item.dim", f"must be positive, got {s.item.dim}")
    if s.item.kind == "id" and s.item.buckets <= 0:
        _fail("schema.item.buckets", f"kind=id needs buckets > 0, got {s.item.buckets}")
    if not (math.isfinite(s.feature_abs_max) and s.feature_abs_max > 0):
        _fail("schema.feature_abs_max", f"must be a finite positive number, got {s.feature_abs_max}")
    if not s.actions:
        _fail("schema.actions", "at least one action is required")
    seen: set[str] = set()
    for i, a in enumerate(s.actions):
        if not a.name or a.name in seen:
            _fail(f"schema.actions[{i}].name", f"empty or duplicate name {a.name!r}")
        seen.add(a.name)
        if a.transform not in ACTION_TRANSFORMS:
            _fail(f"schema.actions[{i}].transform",
                  f"unknown transform {a.transform!r}, expected one of {list(ACTION_TRANSFORMS)}")
        if not math.isfinite(a.default):
            _fail(f"schema.actions[{i}].default", f"must be finite, got {a.default}")
    if not s.labels:
        _fail("schema.labels", "at least one label is required")
    label_names: set[str] = set()
    for i, lab in enumerate(s.labels):
        if not lab.name or lab.name in label_names:
            _fail(f"schema.labels[{i}].name", f"empty or duplicate name {lab.name!r}")
        label_names.add(lab.name)
        if lab.action not in seen:
            _fail(f"schema.labels[{i}].action", f"{lab.action!r} is not a schema action")
        if not math.isfinite(lab.threshold):
            _fail(f"schema.labels[{i}].threshold", f"must be finite, got {lab.threshold}")
    cat_names: set[str] = set()
    for i, c in enumerate(s.categorical):
        if not c.name or c.name in cat_names:
            _fail(f"schema.categorical[{i}].name", f"empty or duplicate name {c.name!r}")
        cat_names.add(c.name)
        if c.kind not in CATEGORICAL_KINDS:
            _fail(f"schema.categorical[{i}].kind",
                  f"unknown kind {c.kind!r}, expected one of {list(CATEGORICAL_KINDS)}")
        if c.dim <= 0:
            _fail(f"schema.categorical[{i}].dim", f"must be positive, got {c.dim}")
        if c.kind == "vocab":
            if not c.values or len(set(c.values)) != len(c.values):
                _fail(f"schema.categorical[{i}].values", "kind=vocab needs distinct values")
        elif c.buckets <= 0:
            _fail(f"schema.categorical[{i}].buckets", f"kind=hash needs buckets > 0, got {c.buckets}")


# ---- strict parsing of untrusted dictionaries ------------------------------------------------

_INT = "integer"
_NUM = "number"
_STR = "string"
_BOOL = "boolean"


def _get(d: dict, key: str, kind: str, path: str, default: Any = dataclasses.MISSING) -> Any:
    if key not in d:
        if default is dataclasses.MISSING:
            raise ConfigError(f"config.{path}: missing")
        return default
    v = d[key]
    ok = {
        _INT: isinstance(v, int) and not isinstance(v, bool),
        _NUM: isinstance(v, (int, float)) and not isinstance(v, bool),
        _STR: isinstance(v, str),
        _BOOL: isinstance(v, bool),
    }[kind]
    if not ok:
        raise ConfigError(f"config.{path}: expected a {kind}, got {json.dumps(v)[:60]}")
    return float(v) if kind == _NUM else v


def _obj(v: Any, path: str) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"config.{path}: expected an object")
    return v


def _list(v: Any, path: str) -> list:
    if not isinstance(v, list):
        raise ConfigError(f"config.{path}: expected an array")
    return v


def _reject_unknown(d: dict, known: set[str], path: str) -> None:
    for k in d:
        if k not in known:
            where = f"{path}.{k}" if path else k
            raise ConfigError(f"config.{where}: unknown field")


def _field_kinds(cls: type) -> dict[str, str]:
    kinds = {}
    for f in dataclasses.fields(cls):
        t = str(f.type)
        kinds[f.name] = {"int": _INT, "float": _NUM, "str": _STR, "bool": _BOOL}.get(t, "")
    return kinds


def _parse_flat(cls: type, d: dict, path: str, skip: set[str] = frozenset()) -> dict[str, Any]:
    out = {}
    defaults = cls()  # type: ignore[call-arg]
    for name, kind in _field_kinds(cls).items():
        if name in skip or not kind:
            continue
        out[name] = _get(d, name, kind, f"{path}.{name}" if path else name,
                         getattr(defaults, name))
    return out


def _parse_model_config(d: Any) -> ModelConfig:
    d = _obj(d, "<root>")
    _reject_unknown(d, {f.name for f in dataclasses.fields(ModelConfig)}, "")
    kw = _parse_flat(ModelConfig, d, "")
    s = _obj(d.get("schema", {}), "schema")
    _reject_unknown(s, {f.name for f in dataclasses.fields(InputSchema)}, "schema")
    item_d = _obj(s.get("item", {}), "schema.item")
    _reject_unknown(item_d, {f.name for f in dataclasses.fields(ItemSpec)}, "schema.item")
    item = ItemSpec(**_parse_flat(ItemSpec, item_d, "schema.item"))
    actions = []
    for i, a in enumerate(_list(s.get("actions", []), "schema.actions")):
        p = f"schema.actions[{i}]"
        a = _obj(a, p)
        _reject_unknown(a, {"name", "transform", "default"}, p)
        actions.append(ActionSpec(name=_get(a, "name", _STR, f"{p}.name"),
                                  transform=_get(a, "transform", _STR, f"{p}.transform", "identity"),
                                  default=_get(a, "default", _NUM, f"{p}.default", 0.0)))
    cats = []
    for i, c in enumerate(_list(s.get("categorical", []), "schema.categorical")):
        p = f"schema.categorical[{i}]"
        c = _obj(c, p)
        _reject_unknown(c, {"name", "kind", "dim", "values", "buckets"}, p)
        values = _list(c.get("values", []), f"{p}.values")
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise ConfigError(f"config.{p}.values[{j}]: expected a string")
        cats.append(CategoricalSpec(name=_get(c, "name", _STR, f"{p}.name"),
                                    kind=_get(c, "kind", _STR, f"{p}.kind", "vocab"),
                                    dim=_get(c, "dim", _INT, f"{p}.dim", 4),
                                    values=list(values),
                                    buckets=_get(c, "buckets", _INT, f"{p}.buckets", 0)))
    labels = []
    for i, lab in enumerate(_list(s.get("labels", []), "schema.labels")):
        p = f"schema.labels[{i}]"
        lab = _obj(lab, p)
        _reject_unknown(lab, {"name", "action", "threshold"}, p)
        labels.append(LabelSpec(name=_get(lab, "name", _STR, f"{p}.name"),
                                action=_get(lab, "action", _STR, f"{p}.action"),
                                threshold=_get(lab, "threshold", _NUM, f"{p}.threshold", 0.0)))
    schema = InputSchema(item=item, actions=actions, categorical=cats, labels=labels,
                         feature_abs_max=_get(s, "feature_abs_max", _NUM,
                                              "schema.feature_abs_max", 1.0e4))
    return ModelConfig(schema=schema, **kw)


def synthetic_schema() -> InputSchema:
    """The input schema of the synthetic news-feed events written by `sirenrope.synth`."""
    from . import synth

    return InputSchema(
        item=ItemSpec(kind="features", dim=synth.ITEM_DIM),
        actions=[ActionSpec("click", "binary"), ActionSpec("like", "binary"),
                 ActionSpec("share", "binary"), ActionSpec("dwell_s", "log1p")],
        categorical=[CategoricalSpec("topic", "vocab", 4, values=list(synth.TOPICS)),
                     CategoricalSpec("surface", "vocab", 2, values=list(synth.SURFACES)),
                     CategoricalSpec("publisher", "hash", 4, buckets=256)],
        labels=[LabelSpec(name, name, 0.0) for name in synth.LABELS],
    )
