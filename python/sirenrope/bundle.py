"""The model bundle (DESIGN section 3): one safetensors file the daemon serves.

Tensors are named like the PyTorch state_dict and stored as little-endian float32; the
metadata holds ``rotor.format`` = ``rotor-bundle``, ``rotor.config`` = the canonical config
JSON, and ``rotor.metrics`` (optional, informational) = the evaluation summary JSON. The
model id is the SHA-256 of the file's bytes, in hex.

`load_bundle` refuses, with a `BundleError` naming what is wrong: bytes that are not
safetensors or are truncated, a missing or invalid config (via `ModelConfig` validation),
a config meant only for offline ablations, missing, unexpected, wrongly shaped or non-F32
tensors, and non-finite weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from .config import ConfigError, ModelConfig
from .model import GenerativeRecommender
from .safetensors_io import SafetensorsError, decode, dtype_name, encode

FORMAT_NAME = "rotor-bundle"
META_FORMAT = "rotor.format"
META_CONFIG = "rotor.config"
META_METRICS = "rotor.metrics"


class BundleError(ValueError):
    """A bundle cannot be served; the message names the field or tensor at fault."""


@dataclass
class Bundle:
    model: GenerativeRecommender
    config: ModelConfig
    model_id: str
    metrics: dict | None = None


def _refuse_offline_only(cfg: ModelConfig) -> None:
    """BundleError naming the first offline-only ablation field `cfg` sets (export and load)."""
    if names := cfg.offline_only():
        raise BundleError(f"config.{names[0]}: {getattr(cfg, names[0])!r} is an offline "
                          "ablation of the study; the daemon does not serve it")


def bundle_bytes(model: GenerativeRecommender, metrics: dict | None = None) -> bytes:
    """Serialise a model; refuses configs that cannot be served (reverse-order ablation)."""
    cfg = model.cfg
    if cfg.reverse_order:
        raise BundleError("config.reverse_order: the reverse-order feature makes every cached "
                          "key stale on each new event, so it cannot be served")
    _refuse_offline_only(cfg)
    tensors = {name: t.detach().to(torch.float32).contiguous().numpy()
               for name, t in model.state_dict().items()}
    for name, arr in tensors.items():
        if not np.isfinite(arr).all():
            raise BundleError(f"tensor '{name}': non-finite values, refusing to export")
    meta = {META_FORMAT: FORMAT_NAME, META_CONFIG: cfg.to_json()}
    if metrics is not None:
        meta[META_METRICS] = json.dumps(metrics, sort_keys=True, separators=(",", ":"))
    return encode(tensors, meta)


def export_bundle(model: GenerativeRecommender, path: str | os.PathLike,
                  metrics: dict | None = None) -> str:
    """Write the bundle atomically (temp file + rename); returns the model id."""
    data = bundle_bytes(model, metrics)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def parse_bundle(data: bytes) -> Bundle:
    try:
        tensors, meta = decode(data)
    except SafetensorsError as e:
        raise BundleError(f"bundle: {e}") from None
    if meta.get(META_FORMAT) != FORMAT_NAME:
        raise BundleError(f"metadata.{META_FORMAT}: expected {FORMAT_NAME!r}, "
                          f"got {meta.get(META_FORMAT)!r}")
    if META_CONFIG not in meta:
        raise BundleError(f"metadata.{META_CONFIG}: missing")
    try:
        cfg = ModelConfig.from_json(meta[META_CONFIG])
    except ConfigError as e:
        raise BundleError(str(e)) from None
    if cfg.reverse_order:
        raise BundleError("config.reverse_order: true is an offline ablation; it breaks cache "
                          "exactness and cannot be served")
    _refuse_offline_only(cfg)
    model = GenerativeRecommender(cfg)
    expected = model.state_dict()
    for name in expected:
        if name not in tensors:
            raise BundleError(f"tensor '{name}': missing (the config implies it)")
    for name, arr in tensors.items():
        if name not in expected:
            raise BundleError(f"tensor '{name}': unexpected (the config does not use it)")
        want = list(expected[name].shape)
        if arr.dtype != np.dtype("<f4"):
            raise BundleError(f"tensor '{name}': dtype {dtype_name(arr)}, expected F32")
        if list(arr.shape) != want:
            raise BundleError(f"tensor '{name}': shape {list(arr.shape)}, the config implies {want}")
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise BundleError(f"tensor '{name}': {bad} non-finite values (NaN or Inf)")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    model.eval()
    try:
        metrics = json.loads(meta[META_METRICS]) if META_METRICS in meta else None
    except json.JSONDecodeError as e:
        raise BundleError(f"metadata.{META_METRICS}: not valid JSON: {e}") from None
    return Bundle(model=model, config=cfg, model_id=hashlib.sha256(data).hexdigest(),
                  metrics=metrics)


def load_bundle(path: str | os.PathLike) -> Bundle:
    with open(path, "rb") as f:
        return parse_bundle(f.read())
