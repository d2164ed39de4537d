"""Train and evaluate the generative recommender on JSONL events; export a bundle.

    python -m sirenrope.train --data events.jsonl --out bundle.safetensors [--variant siren]

Split: a global time cutoff (the ``1 - eval_fraction`` quantile of event times). Every
user's whole history is fed in log order; the loss uses events before the cutoff and the
metrics events after it, so evaluation predicts the future from the past, exactly as the
daemon serves. Long histories are cut into chunks of ``chunk`` events, each preceded by
``window * n_blocks`` events of context (no loss there). A token attends to the ``window``
events before it in each of the ``n_blocks`` attention blocks, and their keys were in turn
computed from the ``window`` events before them, so an event's outputs depend on at most
``window * n_blocks`` predecessors: the chunks give the same outputs as the whole history.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .bundle import export_bundle
from .cli import parse_with_config
from .config import VARIANTS, InputSchema, ModelConfig, _parse_model_config, synthetic_schema
from .features import DAY_MS, EventArrays, featurize
from .metrics import summarize
from .model import GenerativeRecommender, make_batch
from .threads import set_threads


@dataclass
class UserHistory:
    user_id: str
    events: EventArrays  # the user's whole history in log order; positions 0..n-1


def read_histories(path: str, cfg: ModelConfig) -> list[UserHistory]:
    """Group a JSONL event log by user, keeping log order within each user."""
    by_user: dict[str, list[dict]] = {}
    with open(path, "r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                uid = ev["user_id"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{line_no}: not an event: {e}") from None
            by_user.setdefault(str(uid), []).append(ev)
    # check_ids: the daemon dead-letters events with bad ids; training refuses them too.
    return [UserHistory(uid, featurize(evs, cfg, check_ids=True)) for uid, evs in by_user.items()]


def time_cutoff(histories: list[UserHistory], eval_fraction: float) -> int:
    ts = np.concatenate([h.events.ts_ms for h in histories])
    return int(np.quantile(ts, 1.0 - eval_fraction, method="lower")) + 1


# Where training chunks count positions from (make_chunks).
POSITIONS = ("chunk", "history")


@dataclass
class Chunk:
    events: EventArrays
    start_pos: int  # position of events[0]; make_chunks counts from each chunk's start (0)
    loss_from: int  # index of the first event whose loss/metrics count


def make_chunks(histories: list[UserHistory], chunk: int, cfg: ModelConfig,
                positions: str = "chunk") -> list[Chunk]:
    """Each history cut into chunks of ``chunk`` events, each with its context before it.

    Positions count from each chunk's first event (its context included), not from the
    history's: attention sees only differences of positions, so the outputs are the same, but
    lambda's gradient is a sum of position * angle-gradient terms that cancel to the
    difference, and at large absolute positions float32 leaves mostly rounding noise of it
    (measured: 1e-5 at position 0, 5e-4 at 2**31, -0.44 at 2**40 for one loss).
    ``positions="history"`` counts them from the history's first event instead (the study's
    "fix off" ablation: what training did before).
    """
    if positions not in POSITIONS:
        raise ValueError(f"positions {positions!r}: expected one of {POSITIONS}")
    reach = cfg.window * cfg.n_blocks  # how far back an event's outputs can depend
    out = []
    for h in histories:
        n = len(h.events)
        for s in range(0, n, chunk):
            a = max(0, s - reach)
            start = a if positions == "history" else 0
            out.append(Chunk(h.events.slice(a, min(n, s + chunk)), start, s - a))
    return out


def _masks(chunks: list[Chunk], batch, cutoff: int, train: bool) -> torch.Tensor:
    m = batch.valid.clone()
    for b, c in enumerate(chunks):
        m[b, :c.loss_from] = False
    before = torch.from_numpy(np.stack([np.pad(c.events.ts_ms, (0, m.shape[1] - len(c.events)))
                                        for c in chunks])) < cutoff
    return m & (before if train else ~before)


def predict(model: GenerativeRecommender, chunks: list[Chunk], cutoff: int, batch_size: int,
            train_side: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities [N, n_labels] of the events on one side of the cutoff, in
    chunk order. Only chunks with such events run, batched by length (little padding)."""
    model.eval()
    device = next(model.parameters()).device
    side = [i for i, c in enumerate(chunks)
            if ((c.events.ts_ms[c.loss_from:] < cutoff) == train_side).any()]
    side.sort(key=lambda i: len(chunks[i].events))
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for j in range(0, len(side), batch_size):
            idx = side[j:j + batch_size]
            cs = [chunks[i] for i in idx]
            batch = make_batch([c.events for c in cs], [c.start_pos for c in cs], model.cfg)
            m = _masks(cs, batch, cutoff, train_side)
            probs = torch.sigmoid(model(batch.to(device), banded=True)["logits"]).cpu()
            for b, i in enumerate(idx):
                out[i] = (batch.labels[b][m[b]].numpy(), probs[b][m[b]].numpy())
    empty = np.zeros((0, model.cfg.n_labels), np.float32)
    ys = [out[i][0] for i in sorted(out)] or [empty]
    ps = [out[i][1] for i in sorted(out)] or [empty]
    return np.concatenate(ys), np.concatenate(ps).astype(np.float64)


def evaluate(model: GenerativeRecommender, histories: list[UserHistory], eval_fraction: float,
             batch_size: int = 64, chunk: int = 256, positions: str = "chunk") -> dict:
    cutoff = time_cutoff(histories, eval_fraction)
    chunks = make_chunks(histories, chunk, model.cfg, positions)
    y, p = predict(model, chunks, cutoff, batch_size)
    names = [lab.name for lab in model.cfg.schema.labels]
    return {"n_events": int(y.shape[0]), "cutoff_ts_ms": cutoff, "labels": summarize(names, y, p)}


def train(cfg: ModelConfig, histories: list[UserHistory], *, epochs: int, batch_size: int,
          lr: float, seed: int, eval_fraction: float, chunk: int, log=print,
          positions: str = "chunk", device: str = "cpu") -> tuple[
              GenerativeRecommender, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GenerativeRecommender(cfg).to(device)
    cutoff = time_cutoff(histories, eval_fraction)
    chunks = make_chunks(histories, chunk, cfg, positions)
    # Skip chunks with no training events at all (wholly after the cutoff).
    train_chunks = [c for c in chunks if (c.events.ts_ms[c.loss_from:] < cutoff).any()]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(train_chunks) / batch_size)
    warmup = max(1, steps // 20)

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to 5 %
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        # Batches of similar length, in random order: little padding, still shuffled.
        order = sorted(range(len(train_chunks)),
                       key=lambda i: (len(train_chunks[i].events), rng.random()))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        total, count = 0.0, 0
        for idx in batches:
            cs = [train_chunks[i] for i in idx]
            batch = make_batch([c.events for c in cs], [c.start_pos for c in cs], cfg)
            m = _masks(cs, batch, cutoff, True).to(device)
            batch = batch.to(device)
            logits = model(batch, banded=True)["logits"]
            loss = F.binary_cross_entropy_with_logits(logits[m], batch.labels[m])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            n = int(m.sum())
            total += float(loss) * n
            count += n
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / max(count, 1):.5f} "
            f"({time.time() - t0:.0f}s)")
    metrics = evaluate(model, histories, eval_fraction, chunk=chunk, positions=positions)
    model.cpu()  # what callers export, inspect or decode with
    metrics["train_seconds"] = round(time.time() - t0, 1)
    return model, metrics


def format_metrics(metrics: dict) -> str:
    lines = [f"{'label':<10} {'NE':>8} {'AUC':>8} {'ECE':>8} {'base':>8} {'n':>8}"]
    for name, m in metrics["labels"].items():
        lines.append(f"{name:<10} {m['ne']:>8.4f} {m['auc']:>8.4f} {m['ece']:>8.4f} "
                     f"{m['base_rate']:>8.4f} {m['n']:>8d}")
    return "\n".join(lines)


def build_config(args: argparse.Namespace, schema: InputSchema,
                 histories: list[UserHistory]) -> ModelConfig:
    """The model config of the flags; T_ref is the midnight (UTC) before the first event;
    ``d_angle`` None is one learned angle per rotation pair."""
    first = int(min(h.events.ts_ms.min() for h in histories))
    d_angle = args.d_angle  # None: one per rotation pair; 0 or less is refused by validate
    if d_angle is None:
        d_angle = max(1, args.d_model // args.heads // 2)
    cfg = ModelConfig(variant=args.variant, d_model=args.d_model, n_heads=args.heads,
                      n_layers=args.layers, d_angle=d_angle, angle_hidden=args.angle_hidden,
                      window=args.window, t_ref_ms=first - first % DAY_MS, schema=schema,
                      reverse_order=args.reverse_order,
                      act_proj=args.act_proj)
    cfg.validate()
    return cfg


def load_schema(path: str | None) -> InputSchema:
    if path is None:
        return synthetic_schema()
    with open(path, "r", encoding="utf-8") as f:
        return _parse_model_config({"schema": json.load(f)}).schema


def add_model_args(p: argparse.ArgumentParser) -> None:
    d = ModelConfig()  # one source of defaults: the config's own
    p.add_argument("--variant", choices=VARIANTS, default=d.variant)
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--heads", type=int, default=d.n_heads)
    p.add_argument("--layers", type=int, default=d.n_layers)
    p.add_argument("--d-angle", type=int, default=None,
                   help="learned angles per angle network (default: one per rotation pair, "
                        "d_model / heads / 2, as in the paper; docs/results.md)")
    p.add_argument("--angle-hidden", type=int, default=d.angle_hidden)
    p.add_argument("--window", type=int, default=d.window)
    p.add_argument("--act-proj", action=argparse.BooleanOptionalAction, default=True,
                   help="the action attention's own Q/K/V/O projections (the paper's demo "
                        "code; docs/model.md section 3); on by default since the study "
                        "(docs/results.md), --no-act-proj for the model without them")
    p.add_argument("--reverse-order", action="store_true",
                   help="offline ablation: the demo code's reverse-order SIREN input "
                        "(cannot be exported for serving)")


def add_training_args(p: argparse.ArgumentParser, *, threads: int = 0,
                      seed_help: str | None = None) -> None:
    """The training loop's options, shared by train, compare and kv_dtype_study."""
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--threads", type=int, default=threads,
                   help=f"threads, torch's and OpenBLAS's (0: leave their defaults; default {threads})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sirenrope.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="", help="JSONL events (DESIGN section 4)")
    p.add_argument("--schema", help="input schema JSON (default: the synthetic generator's)")
    p.add_argument("--out", help="bundle path to write")
    p.add_argument("--metrics-out", help="write the metrics JSON here")
    add_model_args(p)
    add_training_args(p)
    args = parse_with_config(p, argv, "train")
    if not args.data:
        p.error("--data is required")
    if args.threads:
        set_threads(args.threads)
    schema = load_schema(args.schema)
    probe = ModelConfig(schema=schema)
    histories = read_histories(args.data, probe)
    if not histories:
        print(f"{args.data}: no events", file=sys.stderr)
        return 2
    cfg = build_config(args, schema, histories)
    print(f"{sum(len(h.events) for h in histories)} events, {len(histories)} users; "
          f"variant {cfg.variant}, d_model {cfg.d_model}, {cfg.n_layers} layers, "
          f"{cfg.n_heads} heads, window {cfg.window}", flush=True)
    model, metrics = train(cfg, histories, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, eval_fraction=args.eval_fraction,
                           chunk=args.chunk, log=lambda s: print(s, flush=True))
    metrics["variant"] = cfg.variant
    print(format_metrics(metrics))
    if args.metrics_out:
        with open(args.metrics_out, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
    if args.out:
        # Wall time stays out of the bundle: the same data, settings and seed give the same
        # bytes, hence the same model id.
        stored = {k: v for k, v in metrics.items() if k != "train_seconds"}
        model_id = export_bundle(model, args.out, stored)
        print(f"bundle {args.out} model_id {model_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
