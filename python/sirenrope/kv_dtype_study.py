"""Does storing the K/V window in bfloat16 or float16 change model quality?

    python -m sirenrope.kv_dtype_study --config configs/demo.json --data events.jsonl \
        [--seeds 0 1] [--dtypes f32 bf16 f16] [--bootstrap 200] [--threads 1] [--json-out F]

Trains the model once per seed (the ``train`` section of ``--config``, flags win, like
``sirenrope.compare``), then scores the held-out events (after the time cutoff) with the
same trained weights three times: K/V rows kept in float32, rounded to bfloat16, rounded
to float16 (``GenerativeRecommender.kv_dtype``; the daemon would compute each row in f32
and store it rounded). Prints, per label, NE and AUC for each dtype, the differences to
f32 (mean over seeds), the seed-to-seed spread of the f32 figures for comparison, and a
paired bootstrap 95 % interval of each difference (events resampled with replacement, the
same resample for both dtypes). ``--threads`` defaults to 1 and is not taken from the
config file (the demo config asks for 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from .cli import parse_with_config
from .config import ModelConfig
from .metrics import auc, normalized_entropy, summarize
from .threads import set_threads
from .train import (add_model_args, add_training_args, build_config, load_schema, make_chunks,
                    predict, read_histories, time_cutoff, train)

DTYPES = ("f32", "bf16", "f16")


def bootstrap_diff(y: np.ndarray, p_ref: np.ndarray, p_new: np.ndarray, n: int,
                   seed: int) -> dict[str, list[float]]:
    """Paired bootstrap 95 % intervals of NE(new) - NE(ref) and AUC(new) - AUC(ref) for
    one label: each resample draws events with replacement, both dtypes on the same draw."""
    rng = np.random.default_rng(seed)
    dne, dauc = [], []
    for _ in range(n):
        i = rng.integers(0, y.size, y.size)
        yi = y[i]
        dne.append(normalized_entropy(yi, p_new[i]) - normalized_entropy(yi, p_ref[i]))
        dauc.append(auc(yi, p_new[i]) - auc(yi, p_ref[i]))
    q = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    return {"ne": q(dne), "auc": q(dauc)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sirenrope.kv_dtype_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="")
    p.add_argument("--schema")
    add_model_args(p)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    add_training_args(p, threads=1, seed_help="ignored; see --seeds")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples (0: none)")
    p.add_argument("--json-out", help="write all results as JSON")
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_with_config(p, raw, "train")
    if not any(a == "--threads" or a.startswith("--threads=") for a in raw):
        args.threads = 1  # the config file's thread count is not used here
    if not args.data:
        p.error("--data is required")
    if "f32" not in args.dtypes:
        args.dtypes = ["f32"] + args.dtypes
    set_threads(args.threads)
    schema = load_schema(args.schema)
    t_read = time.time()
    histories = read_histories(args.data, ModelConfig(schema=schema))
    cfg = build_config(args, schema, histories)
    names = [lab.name for lab in cfg.schema.labels]
    print(f"{sum(len(h.events) for h in histories)} events, {len(histories)} users "
          f"({time.time() - t_read:.0f}s to read); variant {cfg.variant}, d_model "
          f"{cfg.d_model}, {cfg.n_layers} layers, window {cfg.window}, {args.epochs} epochs, "
          f"threads {args.threads}", file=sys.stderr, flush=True)
    cutoff = time_cutoff(histories, args.eval_fraction)
    chunks = make_chunks(histories, args.chunk, cfg)
    runs = []
    for seed in args.seeds:
        model, trained = train(cfg, histories, epochs=args.epochs, batch_size=args.batch_size,
                               lr=args.lr, seed=seed, eval_fraction=args.eval_fraction,
                               chunk=args.chunk, log=lambda s: print(s, file=sys.stderr,
                                                                     flush=True))
        run = {"seed": seed, "train_seconds": trained["train_seconds"], "dtypes": {},
               "bootstrap": {}}
        preds = {}
        for dt in args.dtypes:
            model.kv_dtype = dt
            t0 = time.time()
            y, prob = predict(model, chunks, cutoff, 64)
            preds[dt] = prob
            run["dtypes"][dt] = {"labels": summarize(names, y, prob),
                                 "eval_seconds": round(time.time() - t0, 1)}
            if dt != "f32":
                d = np.abs(prob - preds["f32"])
                run["dtypes"][dt]["abs_prob_diff"] = {"mean": float(d.mean()),
                                                      "max": float(d.max())}
        model.kv_dtype = None
        run["n_events"] = int(y.shape[0])
        # Sanity: the f32 pass is the trainer's own evaluation.
        for lab in names:
            assert abs(run["dtypes"]["f32"]["labels"][lab]["ne"]
                       - trained["labels"][lab]["ne"]) < 1e-9
        if args.bootstrap:
            t0 = time.time()
            for dt in args.dtypes:
                if dt == "f32":
                    continue
                run["bootstrap"][dt] = {
                    lab: bootstrap_diff(y[:, j], preds["f32"][:, j], preds[dt][:, j],
                                        args.bootstrap, seed=1000 + seed)
                    for j, lab in enumerate(names)}
            run["bootstrap_seconds"] = round(time.time() - t0, 1)
        runs.append(run)
        f32 = run["dtypes"]["f32"]["labels"]
        print(f"seed {seed}: trained in {run['train_seconds']}s; " + ", ".join(
            f"{dt} {names[0]} NE {run['dtypes'][dt]['labels'][names[0]]['ne']:.5f}"
            for dt in args.dtypes) + f" (f32 AUC {f32[names[0]]['auc']:.4f})",
            file=sys.stderr, flush=True)
    print(format_table(runs, names, args.dtypes))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"config": vars(args), "cutoff_ts_ms": cutoff, "runs": runs}, f,
                      indent=2, sort_keys=True)
    return 0


def format_table(runs: list[dict], names: list[str], dtypes: list[str]) -> str:
    """Per label and metric: each dtype's mean over seeds, the f32 seed spread (max - min),
    each difference to f32 (mean over seeds), and per seed the bootstrap interval."""
    others = [d for d in dtypes if d != "f32"]
    lines = []
    head = f"{'label':<7} {'metric':<6}" + "".join(f" {d:>9}" for d in dtypes) \
        + f" {'f32 seed spread':>16}" + "".join(f" {d + '-f32':>10}" for d in others)
    lines.append(head)
    for lab in names:
        for key in ("ne", "auc"):
            vals = {d: np.array([r["dtypes"][d]["labels"][lab][key] for r in runs])
                    for d in dtypes}
            row = f"{lab:<7} {key.upper():<6}" + "".join(f" {vals[d].mean():>9.5f}"
                                                          for d in dtypes)
            spread = vals["f32"].max() - vals["f32"].min() if len(runs) > 1 else float("nan")
            row += f" {spread:>16.5f}"
            row += "".join(f" {(vals[d] - vals['f32']).mean():>+10.1e}" for d in others)
            lines.append(row)
    if runs and runs[0]["bootstrap"]:
        lines.append("")
        lines.append("paired bootstrap 95% intervals of the differences (per seed):")
        for r in runs:
            for d in others:
                for lab in names:
                    b = r["bootstrap"][d][lab]
                    lines.append(f"seed {r['seed']} {d:>4}-f32 {lab:<6} NE [{b['ne'][0]:+.1e}, "
                                 f"{b['ne'][1]:+.1e}]  AUC [{b['auc'][0]:+.1e}, "
                                 f"{b['auc'][1]:+.1e}]")
    lines.append("")
    for r in runs:
        extra = ", ".join(f"{d} |dp| mean {r['dtypes'][d]['abs_prob_diff']['mean']:.2e} "
                          f"max {r['dtypes'][d]['abs_prob_diff']['max']:.2e}" for d in others)
        lines.append(f"seed {r['seed']}: {r['n_events']} held-out events, trained in "
                     f"{r['train_seconds']}s, eval " + ", ".join(
                         f"{d} {r['dtypes'][d]['eval_seconds']}s" for d in dtypes)
                     + (f"; {extra}" if extra else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
