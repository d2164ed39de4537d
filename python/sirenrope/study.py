"""Does SIREN-RoPE help? Every variant, several seeds, two datasets, one command.

    PYTHONPATH=python /usr/bin/python3 -m sirenrope.study --out build/study [--smoke]

Datasets: the synthetic news feed (``sirenrope.synth``: engagement that follows each user's
daily and weekly cycle, so time-conditioned rotations have something to find) and MovieLens
(``sirenrope.movielens``: real ratings with Unix timestamps and genres). Protocol: a
chronological split (train on the events before the ``1 - eval_fraction`` quantile of time,
evaluate the events after it, each with its whole past as context: ``sirenrope.train``), the
same data, sizes, epochs and seeds for every variant, and per label NE, AUC and ECE with the
mean over seeds, its 95 % interval and each variant's paired difference to ordinal RoPE
(``sirenrope.compare``, ``sirenrope.stats``).

Variants: the six rotations of docs/model.md; ``siren`` without the categorical attributes
in the angle input (synthetic: topic, surface, publisher) or with them (MovieLens: the first
genre); ``siren_no_cyclical`` (the angle networks see T~ only, no daily or weekly phase);
``ordinal_time_in_item`` (ordinal RoPE with the time features as item input features instead
of in the rotation: the paper's "time features in the embedding"); and the fidelity choices
of issue 14 each flipped on ``siren``: ``siren_per_pair`` (one learned angle per rotation
pair, the paper's, instead of ``d_angle`` angles shared by groups of pairs),
``siren_act_proj`` (the demo code's Q/K/V/O projections in the action attention) and
``siren_history_pos`` (training positions counted from each history's start, as before the
fix, instead of each chunk's); and ``siren_proj_pair``, the projections and one angle per
pair together (what ``sirenrope.train`` trains by default). ``siren_no_cyclical`` and ``ordinal_time_in_item`` are offline
ablations the daemon does not serve (``ModelConfig.offline_only``); the others it serves.

Written to ``--out``: ``study.json`` (every run's metrics and training losses, the
summaries), ``study.md`` (the tables), ``metrics.png`` (each variant minus ordinal with its
interval, per dataset and label), ``angles.png`` (what seed 0's ``siren`` learned: the angle of
a few rotation pairs against the time of day and the day of the week, lambda and omega),
``curves.png`` (training loss per epoch). ``--smoke`` runs a tiny version (the test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from . import movielens, synth
from .compare import format_markdown, summarize_runs
from .config import VARIANTS, ModelConfig, synthetic_schema
from .features import DAY_MS, WEEK_MS, time_features
from .threads import set_threads
from .train import build_config, read_histories, train

# (name, variant, schema change, config overrides, training overrides): "attrs" keeps the
# dataset's categorical attributes in the angle input, "none" drops them, "genre" adds
# MovieLens' first genre. Config overrides are the offline-only ablations of ModelConfig
# (OFFLINE_ONLY) and the fidelity choices (d_angle, act_proj; d_angle "pairs" is one learned
# angle per rotation pair, the paper's); the training override is where chunks count
# positions from (train.POSITIONS).
_COMMON = [("siren_no_cyclical", "siren", "attrs", {"angle_time_inputs": "offset"}, {}),
           ("ordinal_time_in_item", "ordinal", "attrs", {"time_in_item": True}, {}),
           ("siren_per_pair", "siren", "attrs", {"d_angle": "pairs"}, {}),
           ("siren_act_proj", "siren", "attrs", {"act_proj": True}, {}),
           ("siren_history_pos", "siren", "attrs", {}, {"positions": "history"}),
           ("siren_proj_pair", "siren", "attrs", {"act_proj": True, "d_angle": "pairs"}, {})]
EXTRA = {"synthetic": [("siren_no_attrs", "siren", "none", {}, {})] + _COMMON,
         "movielens": [("siren_genre", "siren", "genre", {}, {})] + _COMMON}


def _schema(dataset: str, change: str):
    if dataset == "synthetic":
        s = synthetic_schema()
        return replace(s, categorical=[]) if change == "none" else s
    return movielens.schema(with_genre=change == "genre")


def _data(dataset: str, out: str, smoke: bool, synthetic_events: int) -> str:
    if dataset == "synthetic":
        n = 4000 if smoke else synthetic_events
        path = os.path.join(out, f"synthetic-{n}.jsonl")
        if not os.path.exists(path):
            synth.write_jsonl(path, n, seed=0, n_users=max(1, n // 200))
        return path
    d = os.path.join(out, "movielens")
    os.makedirs(d, exist_ok=True)
    movielens.write(d, limit_users=30 if smoke else 0)
    return os.path.join(d, "events.jsonl")


def _args(o: dict, variant: str) -> argparse.Namespace:
    d = ModelConfig()
    return argparse.Namespace(variant=variant, d_model=o["d_model"], heads=d.n_heads,
                              layers=d.n_layers, d_angle=o["d_angle"],
                              angle_hidden=d.angle_hidden, window=o["window"],
                              reverse_order=False, act_proj=d.act_proj)


# The study's sizes (45 minutes on 2 cores for everything; docs/results.md): the model is the
# daemon's default shape but for its window (32, not 64) and training chunks of 128 events.
SIZES = {"d_model": 64, "window": 32, "d_angle": 4, "chunk": 128, "synthetic_events": 200000}
EPOCHS = {"synthetic": 4, "movielens": 5}

_HISTORIES: dict = {}  # (path, schema change) -> histories, per process


def _train_one(task: tuple) -> tuple[dict, list[float], dict | None, dict]:
    """One (variant, seed) run: its metrics, training loss per epoch, what it learned when it
    is the first seed's siren, and its config (without the schema). Top-level so that --jobs
    workers can run it."""
    dataset, path, name, variant, change, overrides, train_overrides, seed, o = task
    if o["threads"]:
        set_threads(o["threads"])
    schema = _schema(dataset, change)
    key = (path, change)
    if key not in _HISTORIES:
        _HISTORIES[key] = read_histories(path, ModelConfig(schema=schema))
    histories = _HISTORIES[key]
    cfg = build_config(_args(o, variant), schema, histories)
    if overrides.get("d_angle") == "pairs":
        overrides = dict(overrides, d_angle=cfg.n_pairs)
    cfg = replace(cfg, **overrides)
    cfg.validate()
    epoch_loss: list[float] = []

    def log(line: str) -> None:
        if "train loss" in line:
            epoch_loss.append(float(line.split("train loss")[1].split()[0]))

    model, m = train(cfg, histories, epochs=o["epochs"][dataset], batch_size=o["batch_size"], lr=o["lr"],
                     seed=seed, eval_fraction=o["eval_fraction"], chunk=o["chunk"], log=log,
                     device=o["device"], **train_overrides)
    first, row = next(iter(m["labels"].items()))
    print(f"{dataset:<10} {name:<16} seed {seed}: {first} NE {row['ne']:.4f} "
          f"AUC {row['auc']:.4f} ({m['train_seconds']}s)", file=sys.stderr, flush=True)
    angles = learned_angles(model) if name == "siren" and seed == o["first_seed"] else None
    config = {k: v for k, v in cfg.to_dict().items() if k != "schema"}
    return m, epoch_loss, angles, config


def run_dataset(dataset: str, args) -> dict:
    """Trains every variant on every seed (--jobs processes at once, each on --threads
    threads): {"runs", "losses" (per variant, in seed order), "angles" (what the first seed's
    siren learned, or None), "configs", "train_options" (per variant)}."""
    path = _data(dataset, args.out, args.smoke, args.synthetic_events)
    specs = [(v, v, "attrs", {}, {}) for v in args.variants] + \
        [x for x in EXTRA[dataset] if x[0] in args.extra]
    opts = {k: getattr(args, k) for k in ("threads", "smoke", "epochs", "batch_size", "lr",
                                          "eval_fraction", "chunk", "d_model", "window",
                                          "d_angle", "device")}
    opts["first_seed"] = args.seeds[0]
    tasks = [(dataset, path, *spec, seed, opts) for spec in specs for seed in args.seeds]
    if args.jobs > 1:
        # spawn, not fork: the parent's torch thread pools do not survive a fork.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            outs = list(pool.map(_train_one, tasks))
    else:
        outs = [_train_one(t) for t in tasks]
    r: dict = {"runs": {}, "losses": {}, "angles": None, "configs": {}, "train_options": {}}
    for task, (m, epoch_loss, angles, config) in zip(tasks, outs):
        name = task[2]
        r["runs"].setdefault(name, []).append(m)
        r["losses"].setdefault(name, []).append(epoch_loss)
        r["angles"] = angles if angles is not None else r["angles"]
        r["configs"][name] = config
        r["train_options"][name] = task[6]
    return r


def learned_angles(model) -> dict:
    """seed 0's siren: the learned angle term f(x) * omega of the first pairs over one day
    (hourly) and one week (daily, at noon), the categorical inputs at row 0; lambda, omega."""
    cfg = model.cfg
    net = model.angle
    t0 = cfg.t_ref_ms - cfg.t_ref_ms % WEEK_MS

    def curve(ts: np.ndarray) -> list[list[float]]:
        tf = torch.from_numpy(time_features(ts, cfg))
        cat = torch.zeros(len(ts), len(cfg.schema.categorical), dtype=torch.int64)
        with torch.no_grad():
            f = net.learned(net.net_input(tf, cat, None)) * net.omega
        return f[:, :4].T.tolist()

    hours = np.arange(24, dtype=np.int64)
    days = np.arange(7, dtype=np.int64)
    return {"hour": hours.tolist(), "by_hour": curve(t0 + hours * 3_600_000),
            "day": days.tolist(), "by_day": curve(t0 + days * DAY_MS + DAY_MS // 2),
            "lambda": float(net.lam), "omega": net.omega.detach().tolist()}


def _plots(out: str, results: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [(ds, lab) for ds, r in results.items() for lab in r["labels"]]
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 2.6 * len(panels)), squeeze=False)
    for row, (ds, lab) in enumerate(panels):
        summary = results[ds]["summary"]
        names = [v for v in summary if f"{lab}.ne" in summary[v]
                 and "vs_ordinal" in summary[v][f"{lab}.ne"]]
        for col, key in enumerate(("ne", "auc")):
            ax = axes[row][col]
            d = [summary[v][f"{lab}.{key}"]["vs_ordinal"] for v in names]
            ax.barh(names, [x["diff"] for x in d],
                    xerr=[0 if np.isnan(x["ci"]) else x["ci"] for x in d], color="#4c72b0")
            ax.axvline(0, color="black", lw=0.8)
            ax.set_title(f"{ds}, {lab}: {key.upper()} minus ordinal (95% interval)", fontsize=9)
    fig.tight_layout()
    written.append(os.path.join(out, "metrics.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 3 * len(results)), squeeze=False)
    for row, (ds, r) in enumerate(results.items()):
        a = r.get("angles")
        if not a:
            continue
        for j, ys in enumerate(a["by_hour"]):
            axes[row][0].plot(a["hour"], ys, marker=".", label=f"angle {j}")
        for j, ys in enumerate(a["by_day"]):
            axes[row][1].plot(a["day"], ys, marker="o", label=f"angle {j}")
        axes[row][0].set_title(f"{ds}: learned angle by hour (UTC); lambda {a['lambda']:.3f}",
                               fontsize=9)
        axes[row][1].set_title(f"{ds}: by day of week at noon (0 = Thursday)\nomega "
                               + ", ".join(f"{w:.2f}" for w in a["omega"]), fontsize=9)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    written.append(os.path.join(out, "angles.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.2), squeeze=False)
    for col, (ds, r) in enumerate(results.items()):
        for name, per_seed in r["losses"].items():
            mean = np.mean(np.array(per_seed), axis=0)
            axes[0][col].plot(range(1, len(mean) + 1), mean, marker=".", label=name)
        axes[0][col].set_title(f"{ds}: training loss per epoch (mean over seeds)", fontsize=9)
        axes[0][col].set_xlabel("epoch")
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    written.append(os.path.join(out, "curves.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sirenrope.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/study")
    p.add_argument("--datasets", nargs="+", default=["synthetic", "movielens"],
                   choices=["synthetic", "movielens"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--extra", nargs="*",
                   default=sorted({x[0] for xs in EXTRA.values() for x in xs}),
                   help="extra variants (EXTRA; each runs on the datasets that define it)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs on every dataset (default per dataset: {EPOCHS})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--chunk", type=int, default=SIZES["chunk"])
    p.add_argument("--d-model", type=int, default=SIZES["d_model"])
    p.add_argument("--window", type=int, default=SIZES["window"])
    p.add_argument("--d-angle", type=int, default=SIZES["d_angle"],
                   help="learned angles per angle network (siren_per_pair uses one per pair)")
    p.add_argument("--synthetic-events", type=int, default=SIZES["synthetic_events"],
                   help="events of the synthetic feed (users: one per 200 events)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads per run, torch's and OpenBLAS's (sirenrope.threads; 0: "
                        "their defaults, or with --jobs > 1 the cores divided by the jobs)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each in its own process (2 on this 2-core machine)")
    p.add_argument("--device", default="cpu",
                   help="torch device to train on, e.g. cuda (optional; never needed, and the "
                        "figures in docs/results.md are CPU's)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny data and model, for the test: seconds, not a result")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch sees no CUDA device here (torch "
                f"{torch.__version__}); leave it out to train on the CPU")
    if args.smoke:  # tiny model (the data is cut in _data)
        args.d_model, args.window, args.d_angle = 16, 8, 2
    args.epochs = {ds: args.epochs or EPOCHS[ds] for ds in EPOCHS}
    if args.jobs > 1 and not args.threads:  # one share of the cores each, BLAS's pool included
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    if args.threads:
        set_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    results = {}
    for ds in args.datasets:
        r = run_dataset(ds, args)
        labels = list(next(iter(r["runs"].values()))[0]["labels"])
        results[ds] = dict(r, labels=labels, summary=summarize_runs(r["runs"], labels))
    text = [f"# Study ({time.strftime('%Y-%m-%d %H:%M')}, {time.time() - started:.0f} s, seeds "
            f"{' '.join(map(str, args.seeds))}, epochs {args.epochs}, d_model {args.d_model}, "
            f"window {args.window}, d_angle {args.d_angle}, chunk {args.chunk}"
            f"{', SMOKE: not a result' if args.smoke else ''})"]
    for ds, r in results.items():
        text += ["", f"## {ds}", "", format_markdown(r["summary"], r["labels"])]
    with open(os.path.join(args.out, "study.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")
    with open(os.path.join(args.out, "study.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "seconds": time.time() - started, "results": results},
                  f, indent=1, sort_keys=True)
    pictures = _plots(args.out, results)
    print("\n".join(text))
    print(f"wrote {args.out}/study.md, study.json, " + ", ".join(map(os.path.basename, pictures)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
