"""The decode benchmark's PyTorch side: the same bundles and cases as bench/decode_bench.cc, run
by the best incremental decode a PyTorch user would write for this model, so the C++/PyTorch
ratios compare one model and a competent baseline (issue 13: the previous baseline, the
reference model's decode_batch, copied every user's window into padded tensors per call).

    PYTHONPATH=python /usr/bin/python3 bench/torch_decode.py build/bench-bundles [more paths]
        [--budget 1.5] [--json out.json] [--cold-mib 128] [--variants eager,script]
        [--self-test-only]

The baseline, `FastDecoder` below, computes exactly what `GenerativeRecommender.decode_batch`
computes (angles, rotation, every block's attention and K/V rows, the action attention, the
head's logits): a self-test against sirenrope's own decode_batch runs first for every bundle
and prints its max abs differences (logits, final hidden state, the K/V windows). What makes
it fast, as a PyTorch user would do it:
  - every user's K/V window is preallocated, once: two ring buffers, K as
    [n_blocks, users, heads, d_head, window] and V as [n_blocks, users, heads, window, d_head]
    (slot of position p: p % window), plus each user's row count and next position as int64
    tensors. Head-major windows make a batch's windows plain views of the buffers (users
    u0..u0+n-1 are contiguous, as decode_bench's batches are), so attention is two batched
    matmuls straight on the cache tensors, nothing copied or gathered (for arbitrary users a
    gather by index would add a copy: this baseline is the favourable case for PyTorch); a
    row count below the window only then adds a mask (and the pad output for an empty
    window);
  - new K/V rows are written in place (index_put_ at each user's slot) after attending;
  - the projections are batched over the users (one matrix product each; W_q and W_k fused
    into one since both read LN1(x)), cos/sin computed once per event and shared by every
    block, the skip scale folded into addmm, omega and the angle groups folded into the angle
    networks' output layers, the SIREN w0 into the sine layers' weights;
  - torch.inference_mode() around everything; inputs featurised outside the timed region
    (time features included), as decode_bench decodes featurised EventInputs.
Two variants, both measured: `eager` (the module above) and `script` (torch.jit.script of the
same module); bench/run.py compares C++ with the faster one.

Two settings, each in its own process (thread pools are fixed when torch loads):
  one       torch.set_num_threads(1), with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = 1 in the
            environment: Debian's torch does its matrix products in OpenBLAS, whose own thread
            pool set_num_threads does not shrink, so without the variable "one thread" still
            runs a second one. Timed in process CPU time (time.process_time), like the C++ side
            (Google Benchmark's thread CPU time), so time stolen by other tenants of a shared
            machine is not counted.
  default   torch's defaults, nothing set (here: OpenMP 1 thread, OpenBLAS one per core). Timed
            in wall-clock time (time.perf_counter), the only fair clock for a multi-threaded
            run, so it is exposed to contention.

For each bundle (a file, or every *.safetensors in a directory), the cases of decode_bench:

  b1        one user with a full window (W rows); each call decodes one event, which
            overwrites the oldest row, so the window stays full.
  b1cold    as b1, round robin over U users whose windows fill --cold-mib MiB (128 by
            default, 4x the L3 of the project's machine) so every event's window comes from
            memory; U = ceil(cold bytes / one window's K/V bytes), as decode_bench's ColdUsers.
  b64       64 users with full windows, one event each per call.
  b64cold   as b64, round robin over groups of 64 users, U rounded up to a multiple of 64.
  reencode  model.forward(batch) over W + 1 events of one user: the causal full forward that
            serving without a cache would run per event. The Batch (padding, time features)
            is built outside the timed region, as the C++ side decodes featurised inputs.

Full windows are made by one forward over W events (exactly the cache decode would build;
python/tests/test_cache_exactness.py holds the two equal) and copied into every user. Each
case is timed in samples of k calls (k sized to ~50 ms), and the median over samples is
reported in ns per event (per re-encode); samples continue until `budget` seconds have passed
(at least 3, at most 15).
"""

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sirenrope.bundle import load_bundle
from sirenrope.config import N_REQUEST_FEATURES, ModelConfig
from sirenrope.features import EventArrays, featurize, time_features
from sirenrope.model import GenerativeRecommender, KvCache, make_batch

BATCH = 64
POOL = 256  # distinct events decoded in turn (as decode_bench.cc)
TWO_PI = 2.0 * math.pi


class FastAngles(nn.Module):
    """One RotaryAngleNet (a siren variant) flattened: omega and repeat_interleave folded into
    the output layers, w0 into the sine layers."""

    tables: List[torch.Tensor]
    sine_w: List[torch.Tensor]
    sine_b: List[torch.Tensor]
    out_w: List[torch.Tensor]
    dnn_w: List[torch.Tensor]
    dnn_b: List[torch.Tensor]

    def __init__(self, net, cfg):
        super().__init__()
        g = cfg.n_pairs // cfg.d_angle
        self.tables = [net.cat[n].weight.detach().clone()
                                           for n in net._cat_names]
        omega = net.omega.detach()
        self.has_sine = hasattr(net, "sine")
        self.has_dnn = hasattr(net, "dnn")
        self.sine_w = []
        self.sine_b = []
        if self.has_sine:
            for layer in net.sine:
                self.sine_w.append((layer.w0 * layer.linear.weight.detach()).clone())
                self.sine_b.append((layer.w0 * layer.linear.bias.detach()).clone())
        self.out_w = []
        self.dnn_w = []
        self.dnn_b = []
        out_b = torch.zeros(cfg.d_angle)
        if self.has_sine:
            self.out_w.append(torch.repeat_interleave(
                net.sine_out.weight.detach() * omega[:, None], g, dim=0).contiguous())
            out_b = out_b + net.sine_out.bias.detach()
        if self.has_dnn:
            lin = [m for m in net.dnn if isinstance(m, nn.Linear)]
            for m in lin[:-1]:
                self.dnn_w.append(m.weight.detach().clone())
                self.dnn_b.append(m.bias.detach().clone())
            self.out_w.append(torch.repeat_interleave(
                lin[-1].weight.detach() * omega[:, None], g, dim=0).contiguous())
            out_b = out_b + lin[-1].bias.detach()
        self.out_bias = torch.repeat_interleave(out_b * omega, g).contiguous()
        # p * theta * lambda in float64, as the model forms it.
        self.theta_lam = (net.theta * net.lam.detach().to(torch.float64)).clone()
        self.two_pi = TWO_PI

    def forward(self, tf: torch.Tensor, cat: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        parts = [tf]
        for k, t in enumerate(self.tables):
            parts.append(t.index_select(0, cat[:, k]))
        x = torch.cat(parts, dim=1)
        f = self.out_bias
        i = 0
        if self.has_sine:
            h = x
            for j in range(len(self.sine_w)):
                h = torch.sin(F.linear(h, self.sine_w[j], self.sine_b[j]))
            f = f + F.linear(h, self.out_w[0])
            i = 1
        if self.has_dnn:
            h = x
            for j in range(len(self.dnn_w)):
                h = torch.relu(F.linear(h, self.dnn_w[j], self.dnn_b[j]))
            f = f + F.linear(h, self.out_w[i])
        ordinal = torch.remainder(pos.to(torch.float64).unsqueeze(1) * self.theta_lam, self.two_pi)
        return ordinal.to(torch.float32) + f


class FastDecoder(nn.Module):
    """Incremental decode of a GenerativeRecommender for `users` users whose K/V windows live
    in two preallocated ring buffers, K [n_blocks, users, heads, d_head, window] (keys
    transposed: the scores are then a plain matrix product, ~20% faster than on K^T views at
    batch 64 and window 1000) and V [n_blocks, users, heads, window, d_head]."""

    act_w: List[torch.Tensor]
    act_b: List[torch.Tensor]
    ln1_w: List[torch.Tensor]
    ln1_b: List[torch.Tensor]
    wqk: List[torch.Tensor]
    wv: List[torch.Tensor]
    wo_t: List[torch.Tensor]
    pad: List[torch.Tensor]
    ln2_w: List[torch.Tensor]
    ln2_b: List[torch.Tensor]
    f1_w: List[torch.Tensor]
    f1_b: List[torch.Tensor]
    f2_t: List[torch.Tensor]
    f2_b: List[torch.Tensor]

    def __init__(self, model, users: int):
        super().__init__()
        cfg = model.cfg
        assert cfg.variant in ("siren", "siren_sine_only", "siren_dnn_only"), cfg.variant
        assert not cfg.reverse_order
        det = lambda t: t.detach().clone().contiguous()  # noqa: E731
        self.d, self.H, self.dh, self.P = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_pairs
        self.L, self.NB, self.C = cfg.n_layers, cfg.n_blocks, cfg.window
        self.eps = cfg.layer_norm_eps
        self.skip = cfg.skip_scale
        self.n_req = N_REQUEST_FEATURES
        self.item_id = cfg.schema.item.kind == "id"
        self.item_emb = det(model.item_emb.weight) if self.item_id else torch.zeros(0)
        self.item_w, self.item_b = det(model.item_proj.weight), det(model.item_proj.bias)
        self.item_ln_w, self.item_ln_b = det(model.item_ln.weight), det(model.item_ln.bias)
        lin = [m for m in model.action_mlp if isinstance(m, nn.Linear)]
        self.act_w = [det(m.weight) for m in lin]
        self.act_b = [det(m.bias) for m in lin]
        self.angle = FastAngles(model.angle, cfg)
        self.act_angle = FastAngles(model.act_angle, cfg)
        self.ln1_w = []
        self.ln1_b = []
        self.wqk = []
        self.wv = []
        self.wo_t = []
        self.pad = []
        self.ln2_w = []
        self.ln2_b = []
        self.f1_w = []
        self.f1_b = []
        self.f2_t = []
        self.f2_b = []
        for blk in model.blocks:
            self.ln1_w.append(det(blk.ln1.weight))
            self.ln1_b.append(det(blk.ln1.bias))
            # W_q and W_k read the same LN1(x): one product for both.
            self.wqk.append(torch.cat([blk.wq.weight.detach(), blk.wk.weight.detach()]))
            self.wv.append(det(blk.wv.weight))
            self.wo_t.append(det(blk.wo.weight.t()))
            self.pad.append(det(blk.pad))
            self.ln2_w.append(det(blk.ln2.weight))
            self.ln2_b.append(det(blk.ln2.bias))
            self.f1_w.append(det(blk.ffn[0].weight))
            self.f1_b.append(det(blk.ffn[0].bias))
            self.f2_t.append(det(blk.ffn[2].weight.t()))
            self.f2_b.append(det(blk.ffn[2].bias * blk.skip))
        self.fln_w, self.fln_b = det(model.final_ln.weight), det(model.final_ln.bias)
        self.act_pad = det(model.act_pad)
        self.h0_w, self.h0_b = det(model.head[0].weight), det(model.head[0].bias)
        self.h2_w, self.h2_b = det(model.head[2].weight), det(model.head[2].bias)
        self.scale = cfg.logit_scale
        # The windows: slot of position p is p % window (every user starts at position 0).
        self.k = torch.zeros(self.NB, users, self.H, self.dh, self.C)
        self.v = torch.zeros(self.NB, users, self.H, self.C, self.dh)
        self.rows = torch.zeros(users, dtype=torch.int64)
        self.next_pos = torch.zeros(users, dtype=torch.int64)
        self.slots = torch.arange(self.C)
        self.ar = torch.arange(max(users, 1))

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [n, m * d] (m heads' worth of rows: q and k together); cos/sin [n, 1, P]."""
        n = x.shape[0]
        xv = x.view(n, -1, self.P, 2)
        a, b = xv[..., 0], xv[..., 1]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).view(n, -1)

    def attend(self, q: torch.Tensor, kt: torch.Tensor, vw: torch.Tensor, rows: torch.Tensor,
               full: bool, pad: torch.Tensor) -> torch.Tensor:
        """q [n, d]; kt [n, H, dh, C], vw [n, H, C, dh] (views of the ring buffers); every
        slot < rows visible, all of them when `full`. The logit scale goes on q (n x d
        products, not n x H x C)."""
        n = q.shape[0]
        s = torch.matmul((q * self.scale).view(n, self.H, 1, self.dh), kt)
        if not full:
            hidden = self.slots.unsqueeze(0) >= rows.unsqueeze(1)  # [n, C]
            s = s.masked_fill(hidden.view(n, 1, 1, self.C), float("-inf"))
        out = torch.matmul(torch.softmax(s, dim=-1), vw).view(n, self.d)
        if not full:
            out = torch.where((rows > 0).unsqueeze(1), out, pad)
        return out

    def write(self, block: int, u0: int, n: int, slot: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> None:
        idx = (self.ar[:n], slot)
        # Views [n, C, H, dh] of both, so (user, slot) index one [H, dh] row each.
        self.k[block, u0:u0 + n].permute(0, 3, 1, 2).index_put_(idx, k.view(n, self.H, self.dh))
        self.v[block, u0:u0 + n].transpose(1, 2).index_put_(idx, v.view(n, self.H, self.dh))

    def forward(self, u0: int, item: torch.Tensor, actions: torch.Tensor, cat: torch.Tensor,
                tf: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decodes event row i for user u0 + i (i < n = len(tf)); returns (logits, hidden)."""
        n = tf.shape[0]
        d = self.d
        pos = self.next_pos[u0:u0 + n]
        rows = self.rows[u0:u0 + n]
        full = bool(rows.min() == self.C)
        slot = torch.remainder(pos, self.C)
        ang = self.angle(tf, cat, pos).unsqueeze(1)
        cos, sin = torch.cos(ang), torch.sin(ang)
        act_ang = self.act_angle(tf, cat, pos).unsqueeze(1)
        if self.item_id:
            item = self.item_emb.index_select(0, item)
        x = torch.relu(F.linear(item, self.item_w, self.item_b))
        x = F.layer_norm(x, (d,), self.item_ln_w, self.item_ln_b, self.eps)
        a = actions
        for j in range(len(self.act_w)):
            a = F.linear(a, self.act_w[j], self.act_b[j])
            a = F.silu(a) if j + 1 < len(self.act_w) else torch.relu(a)
        for b in range(self.L):
            h = F.layer_norm(x, (d,), self.ln1_w[b], self.ln1_b[b], self.eps)
            qk = self.rotate(F.linear(h, self.wqk[b]), cos, sin)
            hv = F.layer_norm(x + a, (d,), self.ln1_w[b], self.ln1_b[b], self.eps)
            v = F.linear(hv, self.wv[b])
            att = self.attend(qk[:, :d], self.k[b, u0:u0 + n], self.v[b, u0:u0 + n], rows, full,
                              self.pad[b])
            self.write(b, u0, n, slot, qk[:, d:], v)
            x = torch.addmm(x, att, self.wo_t[b], alpha=self.skip)
            h = F.layer_norm(x, (d,), self.ln2_w[b], self.ln2_b[b], self.eps)
            f = F.silu(F.linear(h, self.f1_w[b], self.f1_b[b]))
            x = torch.addmm(x + self.f2_b[b], f, self.f2_t[b], alpha=self.skip)
        hf = F.layer_norm(x, (d,), self.fln_w, self.fln_b, self.eps)
        qa = self.rotate(hf, torch.cos(act_ang), torch.sin(act_ang))
        ctx = self.attend(qa, self.k[self.L, u0:u0 + n], self.v[self.L, u0:u0 + n], rows, full,
                          self.act_pad)
        self.write(self.L, u0, n, slot, qa, a)
        head = torch.relu(F.linear(torch.cat([hf, ctx, tf[:, :self.n_req]], dim=1), self.h0_w,
                                   self.h0_b))
        logits = F.linear(head, self.h2_w, self.h2_b)
        self.next_pos[u0:u0 + n] += 1
        self.rows[u0:u0 + n] = torch.clamp(rows + 1, max=self.C)
        return logits, hf


# ---- inputs and windows ------------------------------------------------------------------------
def bundle_paths(args: list[str]) -> list[str]:
    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            out += sorted(os.path.join(a, f) for f in os.listdir(a) if f.endswith(".safetensors"))
        else:
            out.append(a)
    return out


def case_name(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".bundle.safetensors", ".safetensors"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def random_events(cfg: ModelConfig, n: int, seed: int) -> list[dict]:
    """n events of one user in the input-topic JSON shape, for any schema."""
    rng = np.random.default_rng(seed)
    s = cfg.schema
    t = cfg.t_ref_ms + 30 * 86_400_000
    out = []
    for i in range(n):
        t += 1000 + int(rng.integers(600_000))
        item: dict = {"id": f"item-{int(rng.integers(100_000))}"}
        if s.item.kind == "features":
            item["features"] = [float(x) for x in rng.normal(size=s.item.dim)]
        attrs = {}
        for c in s.categorical:
            attrs[c.name] = (c.values[int(rng.integers(len(c.values)))] if c.kind == "vocab"
                             else f"value-{int(rng.integers(1000))}")
        out.append({"event_id": f"e{i}", "user_id": "u", "ts_ms": t, "item": item,
                    "action": {a.name: float(rng.uniform(0, 3)) for a in s.actions},
                    "attrs": attrs})
    return out


class Inputs:
    """Featurised events as tensors (time features included), sliced per call."""

    def __init__(self, ev: EventArrays, cfg: ModelConfig):
        self.item = torch.from_numpy(np.ascontiguousarray(ev.item))
        self.actions = torch.from_numpy(np.ascontiguousarray(ev.actions))
        self.cat = torch.from_numpy(np.ascontiguousarray(ev.cat))
        self.tf = torch.from_numpy(time_features(ev.ts_ms, cfg))

    def rows(self, a: int, b: int) -> tuple[torch.Tensor, ...]:
        return self.item[a:b], self.actions[a:b], self.cat[a:b], self.tf[a:b]


def full_cache(model: GenerativeRecommender, ev: EventArrays) -> KvCache:
    """The cache after decoding all of ``ev`` (len(ev) <= window), built by one forward."""
    cfg = model.cfg
    batch = make_batch([ev], [0], cfg)
    with torch.inference_mode():
        out = model(batch)
    w = cfg.window
    return KvCache(k=[t[0, -w:].clone() for t in out["k"]], v=[t[0, -w:].clone() for t in out["v"]],
                   pos=batch.pos[0, -w:].clone(), next_pos=len(ev),
                   last_ts_ms=int(ev.ts_ms[-1]), events_seen=len(ev))


def load_user(dec: FastDecoder, u: int, cache: KvCache) -> None:
    """User u's window := cache (its rows at slot pos % window)."""
    n = cache.rows
    assert n == dec.C or bool((cache.pos == torch.arange(n)).all()), \
        "a window below capacity must hold positions 0..rows-1"
    slots = torch.remainder(cache.pos, dec.C)
    for b in range(dec.NB):
        dec.k[b, u][:, :, slots] = cache.k[b].view(n, dec.H, dec.dh).permute(1, 2, 0)
        dec.v[b, u][:, slots] = cache.v[b].view(n, dec.H, dec.dh).transpose(0, 1)
    dec.rows[u] = n
    dec.next_pos[u] = cache.next_pos


def fill_users(dec: FastDecoder, cache: KvCache) -> None:
    """Every user := a copy of one full window (the contents do not change the cost)."""
    assert cache.rows == dec.C and bool((cache.pos == torch.arange(dec.C)).all())
    for b in range(dec.NB):
        dec.k[b].copy_(cache.k[b].view(dec.C, dec.H, dec.dh).permute(1, 2, 0).unsqueeze(0))
        dec.v[b].copy_(cache.v[b].view(dec.C, dec.H, dec.dh).transpose(0, 1).unsqueeze(0))
    dec.rows.fill_(dec.C)
    dec.next_pos.fill_(cache.next_pos)


def script(dec: FastDecoder):
    """torch.jit.script of the decoder: the same tensors (windows included), one graph."""
    return torch.jit.script(dec)


def cold_users(cfg: ModelConfig, multiple: int, cold_bytes: int) -> int:
    """decode_bench's ColdUsers: windows filling cold_bytes, rounded up to `multiple`."""
    per_user = cfg.n_blocks * 2 * cfg.window * cfg.d_model * 4
    users = max(1, (cold_bytes + per_user - 1) // per_user)
    return (users + multiple - 1) // multiple * multiple


# ---- self-test ---------------------------------------------------------------------------------
def self_test(model: GenerativeRecommender, ev: EventArrays, variant: str) -> dict:
    """FastDecoder (or its script) against sirenrope's decode_batch: 64 users, a third with
    full windows, a third half full, the rest empty; batch and single-user steps over
    overlapping ranges, so rows wrap, fill and start from nothing. Max abs differences of the
    logits, the hidden states and, at the end, every window's K/V rows."""
    cfg = model.cfg
    w = cfg.window
    full = full_cache(model, ev.slice(0, w))
    half = full_cache(model, ev.slice(0, max(1, w // 2)))
    caches = [copy.deepcopy(full) for _ in range(24)] + [copy.deepcopy(half) for _ in range(24)] \
        + [model.new_cache(0) for _ in range(16)]
    dec = FastDecoder(model, len(caches))
    for u, c in enumerate(caches):
        if c.rows:
            load_user(dec, u, c)
    run = script(dec) if variant == "script" else dec
    pool_ev = ev.slice(w, len(ev))
    pool = Inputs(pool_ev, cfg)
    steps = [(0, 64), (0, 1), (50, 1), (16, 40), (0, 64), (30, 1), (60, 4)]
    diff = {"logits": 0.0, "hidden": 0.0, "kv": 0.0}
    e = 0
    for u0, n in steps:
        ref = model.decode_batch(caches[u0:u0 + n], pool_ev.slice(e, e + n))
        logits, hidden = run(u0, *pool.rows(e, e + n))
        diff["logits"] = max(diff["logits"], float((logits - torch.stack(
            [o.logits for o in ref])).abs().max()))
        diff["hidden"] = max(diff["hidden"], float((hidden - torch.stack(
            [o.hidden for o in ref])).abs().max()))
        e += n
    for u, c in enumerate(caches):
        assert int(dec.rows[u]) == c.rows and int(dec.next_pos[u]) == c.next_pos, u
        slots = torch.remainder(c.pos, dec.C)
        for b in range(dec.NB):
            got_k = dec.k[b, u][:, :, slots].permute(2, 0, 1).reshape(c.rows, cfg.d_model)
            got_v = dec.v[b, u][:, slots].transpose(0, 1).reshape(c.rows, cfg.d_model)
            diff["kv"] = max(diff["kv"], float((got_k - c.k[b]).abs().max()),
                             float((got_v - c.v[b]).abs().max()))
    return diff


TOLERANCE = 1e-4  # float32: the sums run in another order than the reference's


# ---- timing ------------------------------------------------------------------------------------
def median_ns(fn: Callable[[], None], per_call: int, budget: float,
              clock: Callable[[], float]) -> tuple[float, int]:
    """Median ns per unit over samples of k calls timed with ``clock``; ``per_call`` units per
    call."""
    fn()  # warm-up (allocator, lazy init; the script's profiling runs)
    fn()
    fn()
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-7)
    k = max(1, int(0.05 / one))
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - start < budget and len(samples) < 15):
        t0 = clock()
        for _ in range(k):
            fn()
        samples.append((clock() - t0) / (k * per_call) * 1e9)
    return statistics.median(samples), len(samples)


def bench_bundle(path: str, setting: str, budget: float, variants: list[str],
                 cold_bytes: int, emit: Callable[[dict], None]) -> None:
    clock = time.process_time if setting == "one" else time.perf_counter
    b = load_bundle(path)
    model, cfg = b.model, b.config
    model.eval()
    w = cfg.window
    ev = featurize(random_events(cfg, w + 1 + POOL + BATCH, seed=42), cfg)
    name = case_name(path)

    if setting == "one":  # once per bundle: the worker of the other setting runs the same code
        for variant in variants:
            diff = self_test(model, ev, variant)
            emit({"self_test": {"bundle": name, "variant": variant, **diff,
                                "ok": max(diff.values()) <= TOLERANCE}})

    def record(case: str, variant: str, ns: float, samples: int, **extra) -> None:
        emit({"bundle": name, "case": case, "variant": variant, "setting": setting, "ns": ns,
              "samples": samples, "clock": clock.__name__, **extra})

    full = full_cache(model, ev.slice(0, w))
    pool = Inputs(ev.slice(w, w + POOL + BATCH), cfg)
    for case, batch, cold in (("b1", 1, False), ("b1cold", 1, True), ("b64", BATCH, False),
                              ("b64cold", BATCH, True)):
        users = cold_users(cfg, batch, cold_bytes) if cold else batch
        dec = FastDecoder(model, users)
        fill_users(dec, full)
        for variant in variants:
            run = script(dec) if variant == "script" else dec
            state = {"u": 0, "e": 0}

            def step(run=run, batch=batch, users=users, state=state) -> None:
                u, e = state["u"], state["e"]
                run(u, *pool.rows(e, e + batch))
                state["u"] = (u + batch) % users
                state["e"] = (e + batch) % POOL

            record(case, variant, *median_ns(step, batch, budget, clock), users=users)
        del dec, run

    # Re-encode: the full forward over W + 1 events.
    batch = make_batch([ev.slice(0, w + 1)], [0], cfg)
    record("reencode", "forward", *median_ns(lambda: model(batch), 1, budget, clock))


SETTINGS = ("one", "default")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker(paths: list[str], setting: str, budget: float, variants: list[str],
           cold_bytes: int, self_test_only: bool) -> int:
    """Runs every bundle in one setting; prints one JSON object per result line."""
    if setting == "one":
        torch.set_num_threads(1)
    info = {"setting": setting, "torch_threads": torch.get_num_threads(),
            "env": {v: os.environ.get(v) for v in THREAD_VARS}}

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)

    emit({"info": info})
    with torch.inference_mode():
        for path in paths:
            if self_test_only:
                b = load_bundle(path)
                b.model.eval()
                cfg = b.config
                ev = featurize(random_events(cfg, cfg.window + 1 + POOL + BATCH, seed=42), cfg)
                for variant in variants:
                    diff = self_test(b.model, ev, variant)
                    emit({"self_test": {"bundle": case_name(path), "variant": variant, **diff,
                                        "ok": max(diff.values()) <= TOLERANCE}})
                continue
            bench_bundle(path, setting, budget, variants, cold_bytes, emit)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="bundle files or directories")
    p.add_argument("--budget", type=float, default=1.5, help="seconds per case and setting")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--cold-mib", type=int, default=128, help="K/V MiB of the cold cases' users")
    p.add_argument("--variants", default="eager,script",
                   help="comma-separated: eager (the module), script (torch.jit.script of it)")
    p.add_argument("--self-test-only", action="store_true",
                   help="only check FastDecoder against sirenrope's decode_batch")
    p.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    paths = bundle_paths(args.paths)
    variants = [v for v in args.variants.split(",") if v]
    assert set(variants) <= {"eager", "script"}, variants
    if args.worker:
        return worker(paths, args.worker, args.budget, variants, args.cold_mib << 20,
                      args.self_test_only)
    results, info, tests = [], {}, []
    for setting in SETTINGS[:1] if args.self_test_only else SETTINGS:
        env = dict(os.environ)
        for v in THREAD_VARS:
            if setting == "one":
                env[v] = "1"
        cmd = [sys.executable, os.path.abspath(__file__), *paths, "--budget", str(args.budget),
               "--cold-mib", str(args.cold_mib), "--variants", ",".join(variants),
               "--worker", setting] + (["--self-test-only"] if args.self_test_only else [])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            row = json.loads(line)
            if "info" in row:
                info[setting] = row["info"]
                continue
            if "self_test" in row:
                t = row["self_test"]
                tests.append(t)
                print(f"self-test {t['bundle']:>16} {t['variant']:>7}: max abs diff logits "
                      f"{t['logits']:.2e}, hidden {t['hidden']:.2e}, K/V {t['kv']:.2e} "
                      f"{'ok' if t['ok'] else 'FAILED'} (tolerance {TOLERANCE:g})", flush=True)
                continue
            results.append(row)
            print(f"{row['bundle']:>16} {row['case']:>9} {row['variant']:>7} {setting:>8} "
                  f"{row['ns'] / 1e3:10.1f} us  ({row['samples']} samples, {row['clock']})",
                  flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"torch_decode: the {setting} worker failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "settings": info, "results": results,
                       "self_test": tests, "tolerance": TOLERANCE, "variants": variants,
                       "cold_mib": args.cold_mib}, f, indent=1)
    if not all(t["ok"] for t in tests):
        raise SystemExit("torch_decode: the self-test failed: FastDecoder does not compute "
                         "what sirenrope's decode_batch computes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
