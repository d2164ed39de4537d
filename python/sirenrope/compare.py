"""Train every rotary variant with identical settings and print one comparison table.

    python -m sirenrope.compare --config configs/demo.json --data events.jsonl \
        [--variants none ordinal time_linear siren siren_sine_only siren_dnn_only] [--seeds 0 1]

Each variant sees the same data, split, sizes, epochs and seeds; only the rotation differs.
With several seeds the tables show, per label, each metric's mean over seeds with its 95 %
interval (Student t), and each variant's difference to ordinal RoPE seed by seed (paired:
the same seed, the same initial draws and batch order) with its 95 % interval and the paired
t-test's p-value (``sirenrope.stats``), so a difference can be told from noise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .cli import parse_with_config
from .config import VARIANTS, ModelConfig
from .stats import mean_ci, paired
from .threads import set_threads
from .train import (add_model_args, add_training_args, build_config, load_schema,
                    read_histories, train)


METRICS = ("ne", "auc", "ece")
BASELINE = "ordinal"


def summarize_runs(results: dict[str, list[dict]], labels: list[str],
                   baseline: str = BASELINE) -> dict:
    """{variant: {"<label>.<metric>": {"mean", "ci", "values"[, "vs_<baseline>"]}}}: each
    metric over the seeds (runs in seed order), and the paired difference to `baseline`."""
    out: dict[str, dict] = {}
    for variant, runs in results.items():
        row = {}
        for lab in labels:
            for key in METRICS:
                vals = [r["labels"][lab][key] for r in runs]
                mean, ci = mean_ci(vals)
                cell = {"mean": mean, "ci": ci, "values": vals}
                if baseline in results and variant != baseline:
                    base = [r["labels"][lab][key] for r in results[baseline]]
                    cell["vs_" + baseline] = paired(base, vals)
                row[f"{lab}.{key}"] = cell
        out[variant] = row
    return out


def _pm(mean: float, ci: float) -> str:
    return f"{mean:.4f}" if math.isnan(ci) else f"{mean:.4f} ± {ci:.4f}"


def format_markdown(summary: dict, labels: list[str], baseline: str = BASELINE) -> str:
    """Two Markdown tables: the metrics (mean ± 95 % interval over seeds), and each variant
    minus `baseline` seed by seed (mean ± 95 % interval, paired t-test p)."""
    cols = [f"{lab}.{key}" for lab in labels for key in METRICS]
    head = "| variant | " + " | ".join(f"{lab} {key.upper()}" for lab in labels
                                       for key in METRICS) + " |"
    rule = "|---" * (len(cols) + 1) + "|"
    lines = [head, rule]
    for variant, row in summary.items():
        lines.append(f"| `{variant}` | " + " | ".join(_pm(row[c]["mean"], row[c]["ci"])
                                                      for c in cols) + " |")
    diffs = [(v, row) for v, row in summary.items() if v != baseline
             and "vs_" + baseline in row[cols[0]]]
    if diffs:
        lines += ["", f"Minus `{baseline}`, seed by seed (NE and ECE: lower is better; "
                  "AUC: higher):", "", head, rule]
        for variant, row in diffs:
            cells = []
            for c in cols:
                d = row[c]["vs_" + baseline]
                p = "" if math.isnan(d["p"]) else f" (p {d['p']:.3f})"
                cells.append(f"{d['diff']:+.4f}" + ("" if math.isnan(d["ci"])
                                                     else f" ± {d['ci']:.4f}") + p)
            lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sirenrope.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="")
    p.add_argument("--schema")
    add_model_args(p)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    add_training_args(p, seed_help="ignored; see --seeds")
    p.add_argument("--json-out", help="write all results as JSON")
    args = parse_with_config(p, argv, "train")
    if not args.data:
        p.error("--data is required")
    if args.threads:
        set_threads(args.threads)
    schema = load_schema(args.schema)
    histories = read_histories(args.data, ModelConfig(schema=schema))
    results: dict[str, list[dict]] = {}
    for variant in args.variants:
        args.variant = variant
        cfg = build_config(args, schema, histories)
        for seed in args.seeds:
            _, m = train(cfg, histories, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=seed, eval_fraction=args.eval_fraction,
                         chunk=args.chunk, log=lambda s: None)
            results.setdefault(variant, []).append(m)
            first, row = next(iter(m["labels"].items()))
            print(f"{variant:<16} seed {seed}: {first} NE {row['ne']:.4f} AUC {row['auc']:.4f} "
                  f"({m['train_seconds']}s)", file=sys.stderr, flush=True)
    labels = list(next(iter(results.values()))[0]["labels"])
    summary = summarize_runs(results, labels)
    print(format_markdown(summary, labels))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"runs": results, "summary": summary}, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
