"""Train every rotary variant with identical settings and print one comparison table.

    python -m sirenrope.compare --config configs/demo.json --data events.jsonl \
        [--variants none ordinal time_linear siren siren_sine_only siren_dnn_only] [--seeds 0 1]

Each variant sees the same data, split, sizes, epochs and seeds; only the rotation differs.
With several seeds the table shows mean and spread, so a difference can be told from noise.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .cli import parse_with_config
from .config import VARIANTS, ModelConfig
from .train import (add_model_args, add_training_args, build_config, load_schema,
                    read_histories, train)


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
        import torch
        torch.set_num_threads(args.threads)
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
            click = m["labels"]["click"] if "click" in m["labels"] else next(iter(m["labels"].values()))
            print(f"{variant:<16} seed {seed}: NE {click['ne']:.4f} AUC {click['auc']:.4f} "
                  f"({m['train_seconds']}s)", file=sys.stderr, flush=True)
    labels = list(next(iter(results.values()))[0]["labels"])
    head = f"{'variant':<16}" + "".join(f" {lab + ' NE':>14} {lab + ' AUC':>14}" for lab in labels)
    print(head)
    for variant, runs in results.items():
        row = f"{variant:<16}"
        for lab in labels:
            for key in ("ne", "auc"):
                vals = np.array([r["labels"][lab][key] for r in runs])
                cell = f"{vals.mean():.4f}" + (f"±{vals.std():.4f}" if len(vals) > 1 else "")
                row += f" {cell:>14}"
        print(row)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
