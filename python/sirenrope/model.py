"""The strictly causal generative recommender the daemon serves (DESIGN section 2).

Three ways to run the same weights, which tests hold equal:

- `forward`: full sequences (training, evaluation): a padded batch, every token attends to
  the keys of the at most ``window`` events before it.
- `decode`: incremental, one event at a time against a `KvCache` holding, for every block,
  the rotated K and the V rows of the last ``window`` events. This is what the daemon does.
- `score_candidates`: N candidate items at request time t, each one more query at position
  ``next_pos`` against the cached rows; candidates never see each other or themselves.

A token never attends to itself, so its own action (which feeds only its V row) cannot leak
into its own prediction, and a candidate needs no action at all.

K/V state dtype (a study knob, `GenerativeRecommender.kv_dtype`): the daemon could store the
cached rows in bfloat16 or float16 instead of float32. With ``kv_dtype`` "bf16" or "f16",
every K and V row (of every attention block and of the action attention) is computed in
float32 and then rounded to that dtype (round-to-nearest-even, ``tensor.to(dtype)``) before
anything attends to it, in all three paths alike, so caching stays exact; queries,
activations and everything else stay float32. The default (None / "f32") is today's model,
bit for bit. Nothing of this is stored in a bundle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .angles import RotaryAngleNet, rotate
from .config import N_REQUEST_FEATURES, N_TIME_FEATURES, ModelConfig
from .features import EventArrays, time_delta_units, time_features


# kv_dtype name -> the torch dtype K/V rows are rounded to (None: kept in float32).
KV_DTYPES: dict[str | None, torch.dtype | None] = {
    None: None, "f32": None, "bf16": torch.bfloat16, "f16": torch.float16}


def round_rows(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``t`` rounded to ``dtype`` (nearest even) and widened back to float32; ``t`` itself,
    untouched, when ``dtype`` is None."""
    if dtype is None:
        return t
    return t.to(dtype).to(torch.float32)


@dataclass
class Batch:
    """Padded model inputs [B, S, ...]; sequences are left-aligned, ``valid`` marks events."""

    item: torch.Tensor
    actions: torch.Tensor
    cat: torch.Tensor
    time_feats: torch.Tensor
    dt: torch.Tensor  # float64
    pos: torch.Tensor  # int64
    valid: torch.Tensor  # bool
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on ``device`` (itself when already there)."""
        return Batch(**{f.name: getattr(self, f.name).to(device)
                        for f in dataclasses.fields(self)})

    def reverse_feature(self) -> torch.Tensor:
        """The demo code's (S-1-i)/S, newest = 0 (reverse-order ablation only)."""
        n = self.valid.sum(dim=1, keepdim=True).to(torch.float32)
        i = torch.arange(self.valid.shape[1], dtype=torch.float32,
                         device=self.valid.device).unsqueeze(0)
        return ((n - 1 - i) / n.clamp(min=1)).masked_fill(~self.valid, 0.0)


def make_batch(seqs: Sequence[EventArrays], start_pos: Sequence[int], cfg: ModelConfig) -> Batch:
    """Pad sequences into one batch; sequence b's first event has position start_pos[b]."""
    B = len(seqs)
    S = max((len(s) for s in seqs), default=0)
    s0 = seqs[0]
    item = np.zeros((B, S) + s0.item.shape[1:], dtype=s0.item.dtype)
    actions = np.zeros((B, S, s0.actions.shape[1]), dtype=np.float32)
    labels = np.zeros((B, S, s0.labels.shape[1]), dtype=np.float32)
    cat = np.zeros((B, S, s0.cat.shape[1]), dtype=np.int64)
    ts = np.zeros((B, S), dtype=np.int64)
    pos = np.zeros((B, S), dtype=np.int64)
    valid = np.zeros((B, S), dtype=bool)
    for b, s in enumerate(seqs):
        n = len(s)
        item[b, :n], actions[b, :n], labels[b, :n], cat[b, :n] = s.item, s.actions, s.labels, s.cat
        ts[b, :n] = s.ts_ms
        if n:
            ts[b, n:] = s.ts_ms[-1]
        pos[b, :n] = start_pos[b] + np.arange(n, dtype=np.int64)
        valid[b, :n] = True
    return Batch(item=torch.from_numpy(item), actions=torch.from_numpy(actions),
                 cat=torch.from_numpy(cat), time_feats=torch.from_numpy(time_features(ts, cfg)),
                 dt=torch.from_numpy(time_delta_units(ts, cfg)), pos=torch.from_numpy(pos),
                 valid=torch.from_numpy(valid), labels=torch.from_numpy(labels))


@dataclass
class Band:
    """The causal window mask of a batch whose positions count up by one along each sequence
    (what make_batch builds), kept as a band: row i sees rows i-window .. i-1 of its own
    sequence. `attend` then scores each block of ``window`` queries against only the block
    before it and its own (2 x window keys) instead of all S keys: the same attention, in
    S x 2W scores instead of S x S (training and evaluation; `GenerativeRecommender.forward`
    with ``banded=True``)."""

    valid: torch.Tensor  # [B, S] bool
    window: int
    _blocks: tuple | None = None

    def blocks(self) -> tuple[int, int, torch.Tensor]:
        """(blocks, padding rows, visible [B, blocks, W, 2W]), computed once per batch."""
        if self._blocks is None:
            b, s = self.valid.shape
            w = self.window
            nb = -(-s // w) if s else 0
            extra = nb * w - s
            vp = F.pad(self.valid.to(torch.uint8), (w, extra)).bool()  # [B, (nb + 1) W]
            vk = torch.cat([vp[:, :nb * w].reshape(b, nb, w), vp[:, w:].reshape(b, nb, w)], 2)
            vq = vp[:, w:].reshape(b, nb, w)
            r = torch.arange(w, device=vp.device).unsqueeze(1)
            c = torch.arange(2 * w, device=vp.device).unsqueeze(0)
            band = (c >= r) & (c < w + r)  # key c of the pair is w + r - c rows back
            self._blocks = (nb, extra, band & vk.unsqueeze(2) & vq.unsqueeze(3))
        return self._blocks

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: torch.Tensor,
               n_heads: int, scale: float) -> torch.Tensor:
        b, s, d = q.shape
        w = self.window
        nb, extra, visible = self.blocks()

        def pairs(t: torch.Tensor) -> torch.Tensor:  # [B, S, d] -> [B, nb, 2W, d]
            tp = F.pad(t, (0, 0, w, extra))
            return torch.cat([tp[:, :nb * w].reshape(b, nb, w, d),
                              tp[:, w:].reshape(b, nb, w, d)], 2)

        qb = F.pad(q, (0, 0, 0, extra)).reshape(b, nb, w, d)
        out = attend(qb, pairs(k), pairs(v), visible, pad, n_heads, scale)
        return out.reshape(b, nb * w, d)[:, :s]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor | Band,
           pad: torch.Tensor, n_heads: int, scale: float) -> torch.Tensor:
    """Multi-head softmax attention with a fixed logit scale.

    q [..., Sq, d], k and v [..., Sk, d], visible [..., Sq, Sk] bool (or a `Band` of a
    [B, S] batch). A query with no visible key outputs ``pad``.
    """
    if isinstance(visible, Band):
        return visible.attend(q, k, v, pad, n_heads, scale)
    *lead, sq, d = q.shape
    sk = k.shape[-2]
    dh = d // n_heads
    qh = q.reshape(*lead, sq, n_heads, dh).transpose(-3, -2)
    kh = k.reshape(*lead, sk, n_heads, dh).transpose(-3, -2)
    vh = v.reshape(*lead, sk, n_heads, dh).transpose(-3, -2)
    scores = scale * torch.matmul(qh, kh.transpose(-1, -2))  # [..., H, Sq, Sk]
    any_key = visible.any(dim=-1)  # [..., Sq]
    mask = visible.unsqueeze(-3)
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(any_key.unsqueeze(-2).unsqueeze(-1), scores, torch.zeros_like(scores))
    out = torch.matmul(torch.softmax(scores, dim=-1), vh)  # [..., H, Sq, dh]
    out = out.transpose(-3, -2).reshape(*lead, sq, d)
    return torch.where(any_key.unsqueeze(-1), out, pad.expand_as(out))


class Block(nn.Module):
    """Pre-LN attention block: Q, K from LN1(x), V from LN1(x + a); then a SiLU FFN."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.kv_round: torch.dtype | None = None  # set by GenerativeRecommender.kv_dtype
        self.n_heads = cfg.n_heads
        self.scale = cfg.logit_scale
        self.skip = cfg.skip_scale
        self.ln1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.pad = nn.Parameter(torch.zeros(d))
        self.ln2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), nn.SiLU(),
                                 nn.Linear(cfg.ffn_mult * d, d))

    def query(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        return rotate(self.wq(self.ln1(x)), angles, self.n_heads)

    def key_value(self, x: torch.Tensor, a: torch.Tensor,
                  angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K and V rows as stored: rounded to the state dtype when one is set."""
        k = rotate(self.wk(self.ln1(x)), angles, self.n_heads)
        v = self.wv(self.ln1(x + a))
        return round_rows(k, self.kv_round), round_rows(v, self.kv_round)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               visible: torch.Tensor | Band) -> torch.Tensor:
        return attend(q, k, v, visible, self.pad, self.n_heads, self.scale)

    def mix(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        x = x + self.skip * self.wo(att)
        return x + self.skip * self.ffn(self.ln2(x))


@dataclass
class KvCache:
    """One user's ready-to-rank state: per block, the last ``window`` rotated K and V rows."""

    k: list[torch.Tensor]  # n_blocks x [n, d_model]
    v: list[torch.Tensor]
    pos: torch.Tensor  # [n] int64
    next_pos: int = 0
    last_ts_ms: int | None = None
    events_seen: int = 0  # for the reverse-order ablation only

    @property
    def rows(self) -> int:
        return int(self.pos.shape[0])


@dataclass
class DecodeOutput:
    angles: torch.Tensor  # [P] block angles
    act_angles: torch.Tensor  # [P] action-attention angles
    k: list[torch.Tensor] = field(default_factory=list)  # n_blocks x [d_model] new rows
    v: list[torch.Tensor] = field(default_factory=list)
    hidden: torch.Tensor | None = None  # [d_model] final LN output
    logits: torch.Tensor | None = None  # [n_labels]


class GenerativeRecommender(nn.Module):
    """The model. ``kv_dtype`` (None or "f32": default; "bf16"; "f16") sets the dtype the
    cached K/V rows are rounded to (module docstring); it may be set at any time, e.g. on
    a model loaded from a bundle, and is not part of the bundle."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        s, d = cfg.schema, cfg.d_model
        if s.item.kind == "id":
            self.item_emb = nn.Embedding(s.item.buckets + 1, s.item.dim)
        self.item_proj = nn.Linear(s.item.dim + (N_TIME_FEATURES if cfg.time_in_item else 0), d)
        self.item_ln = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        h = cfg.action_hidden
        self.action_mlp = nn.Sequential(nn.Linear(cfg.n_actions, h), nn.SiLU(), nn.Linear(h, h),
                                        nn.SiLU(), nn.Linear(h, d), nn.ReLU())
        self.angle = RotaryAngleNet(cfg)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.final_ln = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.act_angle = RotaryAngleNet(cfg)
        self.act_pad = nn.Parameter(torch.zeros(d))
        if cfg.act_proj:  # registered here: their tensors sit between act_angle.* and head.*
            self.act_wq = nn.Linear(d, d, bias=False)
            self.act_wk = nn.Linear(d, d, bias=False)
            self.act_wv = nn.Linear(d, d, bias=False)
            self.act_wo = nn.Linear(d, d, bias=False)
        self.head = nn.Sequential(nn.Linear(2 * d + N_REQUEST_FEATURES, cfg.head_hidden),
                                  nn.ReLU(), nn.Linear(cfg.head_hidden, cfg.n_labels))
        self.kv_dtype = None

    @property
    def kv_dtype(self) -> str | None:
        return self._kv_dtype

    @kv_dtype.setter
    def kv_dtype(self, name: str | None) -> None:
        if name not in KV_DTYPES:
            raise ValueError(f"kv_dtype {name!r}: expected one of {list(KV_DTYPES)}")
        self._kv_dtype = name
        self._kv_round = KV_DTYPES[name]
        for blk in self.blocks:
            blk.kv_round = self._kv_round

    # ---- shared pieces ---------------------------------------------------------------------
    def embed_item(self, item: torch.Tensor, time_feats: torch.Tensor) -> torch.Tensor:
        if self.cfg.schema.item.kind == "id":
            item = self.item_emb(item)
        if self.cfg.time_in_item:  # offline ablation: time as an input feature
            item = torch.cat([item, time_feats], dim=-1)
        return self.item_ln(torch.relu(self.item_proj(item)))

    def act_query_key_value(self, h: torch.Tensor, a: torch.Tensor | None,
                            act_angles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The action attention's query, and its K and V rows as stored (None without ``a``):
        Q = K = rot(h) and V = a, or with ``act_proj`` Q = rot(Wq h), K = rot(Wk h),
        V = Wv a."""
        n_heads, proj = self.cfg.n_heads, self.cfg.act_proj
        q = rotate(self.act_wq(h) if proj else h, act_angles, n_heads)
        if a is None:
            return q, None, None
        k = rotate(self.act_wk(h), act_angles, n_heads) if proj else q
        v = self.act_wv(a) if proj else a
        return q, round_rows(k, self._kv_round), round_rows(v, self._kv_round)

    def act_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   visible: torch.Tensor | Band) -> torch.Tensor:
        """The action context fed to the head: attention over the cached action rows, through
        Wo with ``act_proj``."""
        ctx = attend(q, k, v, visible, self.act_pad, self.cfg.n_heads, self.cfg.logit_scale)
        return self.act_wo(ctx) if self.cfg.act_proj else ctx

    def _head(self, h: torch.Tensor, ctx: torch.Tensor, time_feats: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([h, ctx, time_feats[..., :N_REQUEST_FEATURES]], dim=-1))

    # ---- full sequence -----------------------------------------------------------------------
    def forward(self, batch: Batch, banded: bool = False) -> dict[str, object]:
        """``banded``: attention through a `Band` (the same outputs up to float rounding, a
        fraction of the work for long chunks); needs positions that count up by one along
        each sequence, as make_batch builds them."""
        cfg = self.cfg
        rev = batch.reverse_feature() if cfg.reverse_order else None
        angles = self.angle(batch.time_feats, batch.cat, batch.pos, dt=batch.dt, rev=rev)
        act_angles = self.act_angle(batch.time_feats, batch.cat, batch.pos, dt=batch.dt, rev=rev)
        visible: torch.Tensor | Band
        if banded:
            steps = batch.pos[:, 1:] - batch.pos[:, :-1]
            if not bool(((steps == 1) | ~batch.valid[:, 1:]).all()):
                raise ValueError("banded attention needs positions that count up by one")
            visible = Band(batch.valid, cfg.window)
        else:
            gap = batch.pos.unsqueeze(-1) - batch.pos.unsqueeze(-2)  # p_i - p_j  [B, S, S]
            visible = (gap > 0) & (gap <= cfg.window) & batch.valid.unsqueeze(-2) \
                & batch.valid.unsqueeze(-1)
        x = self.embed_item(batch.item, batch.time_feats)
        a = self.action_mlp(batch.actions)
        ks, vs = [], []
        for blk in self.blocks:
            q = blk.query(x, angles)
            k, v = blk.key_value(x, a, angles)
            x = blk.mix(x, blk.attend(q, k, v, visible))
            ks.append(k)
            vs.append(v)
        h = self.final_ln(x)
        qa, ka, va = self.act_query_key_value(h, a, act_angles)
        ctx = self.act_attend(qa, ka, va, visible)
        ks.append(ka)
        vs.append(va)
        logits = self._head(h, ctx, batch.time_feats)
        return {"logits": logits, "hidden": h, "angles": angles, "act_angles": act_angles,
                "k": ks, "v": vs}

    # ---- incremental -------------------------------------------------------------------------
    def new_cache(self, start_pos: int = 0) -> KvCache:
        d = self.cfg.d_model
        empty = [torch.zeros(0, d) for _ in range(self.cfg.n_blocks)]
        return KvCache(k=empty, v=[t.clone() for t in empty],
                       pos=torch.zeros(0, dtype=torch.int64), next_pos=start_pos)

    @torch.no_grad()
    def decode(self, cache: KvCache, ev: EventArrays, r: int = 0) -> DecodeOutput:
        """Append event row ``r`` of ``ev`` to ``cache`` (in place) and return what it added."""
        return self.decode_batch([cache], ev.slice(r, r + 1))[0]

    @torch.no_grad()
    def decode_batch(self, caches: Sequence[KvCache], ev: EventArrays) -> list[DecodeOutput]:
        """Event row b of ``ev`` for the user of ``caches[b]``, all users in one pass (the
        projections become matrix-matrix products). Caches are updated in place; a user may
        appear only once per call."""
        cfg = self.cfg
        n_users = len(caches)
        assert len(ev) == n_users, "one event per cache"
        assert len({id(c) for c in caches}) == n_users, "a user may appear once per batch"
        tf = torch.from_numpy(time_features(ev.ts_ms, cfg))
        dt = torch.from_numpy(time_delta_units(ev.ts_ms, cfg))
        cat = torch.from_numpy(ev.cat)
        pos = torch.tensor([c.next_pos for c in caches], dtype=torch.int64)
        rev = torch.zeros(n_users) if cfg.reverse_order else None  # the newest event is 0
        angles = self.angle(tf, cat, pos, dt=dt, rev=rev)
        act_angles = self.act_angle(tf, cat, pos, dt=dt, rev=rev)
        rows = max(c.rows for c in caches)
        visible = torch.zeros(n_users, 1, rows, dtype=torch.bool)
        for u, c in enumerate(caches):
            visible[u, 0, :c.rows] = True

        def window(b: int, which: str) -> torch.Tensor:  # [users, rows, d], zero-padded
            out = torch.zeros(n_users, rows, cfg.d_model)
            for u, c in enumerate(caches):
                out[u, :c.rows] = getattr(c, which)[b]
            return out

        x = self.embed_item(torch.from_numpy(ev.item), tf)
        a = self.action_mlp(torch.from_numpy(ev.actions))
        ks, vs = [], []
        for b, blk in enumerate(self.blocks):
            q = blk.query(x, angles)
            k, v = blk.key_value(x, a, angles)
            att = blk.attend(q.unsqueeze(1), window(b, "k"), window(b, "v"), visible)[:, 0]
            x = blk.mix(x, att)
            ks.append(k)
            vs.append(v)
        h = self.final_ln(x)
        qa, ka, va = self.act_query_key_value(h, a, act_angles)
        ctx = self.act_attend(qa.unsqueeze(1), window(cfg.n_layers, "k"),
                              window(cfg.n_layers, "v"), visible)[:, 0]
        ks.append(ka)
        vs.append(va)
        logits = self._head(h, ctx, tf)
        outs = []
        for u, c in enumerate(caches):
            out = DecodeOutput(angles=angles[u], act_angles=act_angles[u],
                               k=[t[u] for t in ks], v=[t[u] for t in vs], hidden=h[u],
                               logits=logits[u])
            # The next event sees the last `window` events: this one and window-1 before it.
            drop = max(0, c.rows - (cfg.window - 1))
            for b in range(cfg.n_blocks):
                c.k[b] = torch.cat([c.k[b][drop:], out.k[b].unsqueeze(0)])
                c.v[b] = torch.cat([c.v[b][drop:], out.v[b].unsqueeze(0)])
            c.pos = torch.cat([c.pos[drop:], pos[u:u + 1]])
            c.next_pos += 1
            c.last_ts_ms = int(ev.ts_ms[u])
            c.events_seen += 1
            outs.append(out)
        return outs

    @torch.no_grad()
    def score_candidates(self, cache: KvCache, cands: EventArrays) -> torch.Tensor:
        """Logits [N, n_labels] for N candidates (items, attrs and request time ``ts_ms``)
        at position ``cache.next_pos``, each attending only to the cached rows."""
        cfg = self.cfg
        n = len(cands)
        item = torch.from_numpy(cands.item)
        cat = torch.from_numpy(cands.cat)
        tf = torch.from_numpy(time_features(cands.ts_ms, cfg))
        dt = torch.from_numpy(time_delta_units(cands.ts_ms, cfg))
        pos = torch.full((n,), cache.next_pos, dtype=torch.int64)
        rev = torch.zeros(n) if cfg.reverse_order else None
        angles = self.angle(tf, cat, pos, dt=dt, rev=rev)
        act_angles = self.act_angle(tf, cat, pos, dt=dt, rev=rev)
        visible = torch.ones(n, cache.rows, dtype=torch.bool)
        x = self.embed_item(item, tf)
        for b, blk in enumerate(self.blocks):
            x = blk.mix(x, blk.attend(blk.query(x, angles), cache.k[b], cache.v[b], visible))
        h = self.final_ln(x)
        qa, _, _ = self.act_query_key_value(h, None, act_angles)
        ctx = self.act_attend(qa, cache.k[-1], cache.v[-1], visible)
        return self._head(h, ctx, tf)
