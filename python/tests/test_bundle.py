"""Bundle export and load: round trip, reproducibility, and every refusal naming its cause."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from helpers import random_events, seeded_model, small_config
from sirenrope.bundle import (META_CONFIG, META_FORMAT, BundleError, bundle_bytes, export_bundle,
                              load_bundle, parse_bundle)
from sirenrope.config import ModelConfig
from sirenrope.features import featurize
from sirenrope.model import make_batch
from sirenrope.safetensors_io import decode, encode


@pytest.fixture(scope="module")
def model():
    return seeded_model(small_config(), seed=21)


@pytest.fixture(scope="module")
def good(model):
    return bundle_bytes(model, metrics={"labels": {"click": {"auc": 0.7}}})


def _rebuild(data: bytes, *, tensors=None, meta=None, drop=(), cfg_edit=None) -> bytes:
    t, m = decode(data)
    if tensors:
        t.update(tensors)
    for name in drop:
        del t[name]
    if cfg_edit:
        cfg = json.loads(m[META_CONFIG])
        cfg_edit(cfg)
        m[META_CONFIG] = json.dumps(cfg)
    if meta:
        m.update(meta)
    return encode(t, m)


def test_round_trip_gives_identical_outputs_and_sha256_id(model, good, tmp_path):
    path = tmp_path / "b.safetensors"
    model_id = export_bundle(model, path, metrics={"labels": {"click": {"auc": 0.7}}})
    data = path.read_bytes()
    assert data == good  # deterministic bytes
    assert model_id == hashlib.sha256(data).hexdigest()
    b = load_bundle(path)
    assert b.model_id == model_id and b.metrics == {"labels": {"click": {"auc": 0.7}}}
    assert b.config == model.cfg
    batch = make_batch([featurize(random_events(20), model.cfg)], [0], model.cfg)
    with torch.no_grad():
        assert torch.equal(model(batch)["logits"], b.model(batch)["logits"])
    assert not (tmp_path / "b.safetensors.tmp").exists()


def test_tensor_names_follow_the_state_dict(good):
    tensors, meta = decode(good)
    for name in ["angle.omega", "angle.lam", "angle.sine.0.linear.weight", "angle.dnn.6.bias",
                 "angle.cat.topic.weight", "act_angle.omega", "blocks.1.wq.weight",
                 "blocks.0.pad", "final_ln.weight", "act_pad", "head.2.bias",
                 "action_mlp.4.weight", "item_proj.weight"]:
        assert name in tensors, name
    assert all(a.dtype == np.float32 for a in tensors.values())
    assert meta[META_FORMAT] == "rotor-bundle"


@pytest.mark.parametrize("cut", [0, 4, 8, 20, 200, -1, -100])
def test_truncated_bundle_is_refused(good, cut):
    with pytest.raises(BundleError, match="truncated"):
        parse_bundle(good[:cut] if cut >= 0 else good[:len(good) + cut])


def test_wrong_shape_is_refused(good):
    bad = _rebuild(good, tensors={"blocks.0.wq.weight": np.zeros((32, 31), np.float32)})
    with pytest.raises(BundleError, match=r"tensor 'blocks.0.wq.weight': shape \[32, 31\]"):
        parse_bundle(bad)


@pytest.mark.parametrize("dtype,name", [(np.float16, "F16"), (np.float64, "F64")])
def test_wrong_dtype_is_refused(good, dtype, name):
    t, _ = decode(good)
    bad = _rebuild(good, tensors={"angle.omega": t["angle.omega"].astype(dtype)})
    with pytest.raises(BundleError, match=f"tensor 'angle.omega': dtype {name}, expected F32"):
        parse_bundle(bad)


def test_missing_tensor_is_refused(good):
    with pytest.raises(BundleError, match="tensor 'head.0.weight': missing"):
        parse_bundle(_rebuild(good, drop=["head.0.weight"]))


def test_unexpected_tensor_is_refused(good):
    bad = _rebuild(good, tensors={"blocks.9.wq.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(BundleError, match="tensor 'blocks.9.wq.weight': unexpected"):
        parse_bundle(bad)


def test_config_that_contradicts_tensors_is_refused(good):
    def more_layers(c):
        c["n_layers"] = 3
    with pytest.raises(BundleError, match="tensor 'blocks.2.*missing"):
        parse_bundle(_rebuild(good, cfg_edit=more_layers))

    def wider(c):
        c["d_model"] = 48
    with pytest.raises(BundleError, match="shape"):
        parse_bundle(_rebuild(good, cfg_edit=wider))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(good, value):
    t, _ = decode(good)
    w = t["blocks.1.ffn.0.weight"].copy()
    w[3, 5] = value
    with pytest.raises(BundleError, match="tensor 'blocks.1.ffn.0.weight': 1 non-finite"):
        parse_bundle(_rebuild(good, tensors={"blocks.1.ffn.0.weight": w}))


@pytest.mark.parametrize("edit", [dict(angle_time_inputs="offset"), dict(time_in_item=True)])
def test_offline_ablations_train_but_do_not_export(edit):
    """The study's ablations are ModelConfig fields the daemon does not serve: left out of a
    bundle at their defaults (so every existing bundle keeps its bytes and model id), and
    refused by the exporter otherwise."""
    cfg = small_config(**edit)
    assert cfg.offline_only() == list(edit)
    assert list(edit)[0] in cfg.to_dict()
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert not set(edit) & set(small_config().to_dict())
    with pytest.raises(BundleError, match=f"config.{list(edit)[0]}: .* offline ablation"):
        bundle_bytes(seeded_model(cfg, seed=2))


def test_action_projections_round_trip_and_are_left_out_when_off():
    """act_proj is served: exported and reloaded with its four tensors (between act_angle.*
    and head.*, the order the daemon checks); off, the config does not name it, so bundles
    made before it keep their bytes."""
    assert "act_proj" not in small_config().to_dict()
    m = seeded_model(small_config(act_proj=True), seed=23)
    data = bundle_bytes(m)
    b = parse_bundle(data)
    assert b.config.act_proj and b.config.to_dict()["act_proj"] is True
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in b.model.state_dict().items())
    names = list(decode(data)[0])
    assert names.index("act_wq.weight") > max(i for i, n in enumerate(names)
                                               if n.startswith("act_angle."))
    assert names.index("act_wo.weight") < names.index("head.0.weight")
    off = dict(json.loads(small_config().to_json()), act_proj=False)
    assert ModelConfig.from_dict(off) == small_config()


def test_export_refuses_non_finite_weights():
    m = seeded_model(small_config(), seed=22)
    with torch.no_grad():
        m.head[0].weight[0, 0] = float("nan")
    with pytest.raises(BundleError, match="tensor 'head.0.weight': non-finite"):
        bundle_bytes(m)


@pytest.mark.parametrize("edit,field", [
    (lambda c: c.update(d_angle=3), "config.d_angle"),
    (lambda c: c.update(n_heads=5), "config.n_heads"),
    (lambda c: c.update(variant="alibi"), "config.variant"),
    (lambda c: c.update(window=0), "config.window"),
    (lambda c: c.update(logit_scale="big"), "config.logit_scale"),
    (lambda c: c.update(rope_base=1.0), "config.rope_base"),
    (lambda c: c.update(surprise=1), "config.surprise"),
    (lambda c: c["schema"]["item"].update(kind="image"), "config.schema.item.kind"),
    (lambda c: c["schema"]["labels"][0].update(action="nope"), r"config.schema.labels\[0\].action"),
    (lambda c: c["schema"]["categorical"][2].update(buckets=0),
     r"config.schema.categorical\[2\].buckets"),
    (lambda c: c.update(reverse_order=True), "config.reverse_order"),
    (lambda c: c.update(angle_time_inputs="offset"), "config.angle_time_inputs"),
    (lambda c: c.update(angle_time_inputs="weekly"), "config.angle_time_inputs"),
    (lambda c: c.update(time_in_item=True), "config.time_in_item"),
    (lambda c: c.update(format_version=2), "config.format_version"),
])
def test_invalid_config_is_refused_naming_the_field(good, edit, field):
    with pytest.raises(BundleError, match=field):
        parse_bundle(_rebuild(good, cfg_edit=edit))


@pytest.mark.parametrize("edit,message", [
    (dict(window=65537), "config.window: must be at most 65536, got 65537"),
    (dict(window=65536, d_model=512, n_heads=8, n_layers=2),
     "config.window: one user's K/V window of 65536 rows x 3 blocks x 2 x d_model 512 x 4 "
     "bytes = 805306368 bytes exceeds the 268435456-byte limit"),
])
def test_export_refuses_a_window_the_daemon_would_refuse(edit, message):
    """The caps of encoders/model_config.h, with the C++ loader's message: a model that
    trains here must not export a bundle `rotor serve` refuses."""
    from sirenrope.config import ConfigError, ModelConfig
    with pytest.raises(ConfigError) as refused:
        ModelConfig(**edit).validate()
    assert str(refused.value) == message


def test_metadata_problems_are_refused(good):
    t, m = decode(good)
    with pytest.raises(BundleError, match="metadata.rotor.format"):
        parse_bundle(encode(t, {k: v for k, v in m.items() if k != META_FORMAT}))
    with pytest.raises(BundleError, match="metadata.rotor.config: missing"):
        parse_bundle(encode(t, {k: v for k, v in m.items() if k != META_CONFIG}))
    with pytest.raises(BundleError, match="config: not valid JSON"):
        parse_bundle(encode(t, dict(m, **{META_CONFIG: "{not json"})))


def test_garbage_header_is_refused(good):
    n = struct.unpack("<Q", good[:8])[0]
    with pytest.raises(BundleError, match="header"):
        parse_bundle(good[:8] + b"\xff" * n + good[8 + n:])
