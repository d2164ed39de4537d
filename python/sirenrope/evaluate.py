"""Evaluate a bundle on a JSONL event log: NE, AUC and ECE per label.

    python -m sirenrope.evaluate --bundle B.safetensors --data events.jsonl [--eval-fraction 0.2]
        [--kv-dtype f32|bf16|f16]

The bundle is loaded through the same validating loader the tests pin down, so this also
proves that an exported bundle round-trips. Events after the time cutoff are scored with
the whole history before them as context, as the daemon would. ``--kv-dtype bf16`` (or
``f16``) rounds every cached K/V row to that dtype, as a daemon storing its state in it
would (``GenerativeRecommender.kv_dtype``); the default f32 is the model as trained.
"""

from __future__ import annotations

import argparse
import json
import sys

from .bundle import BundleError, load_bundle
from .cli import parse_with_config
from .train import evaluate, format_metrics, read_histories


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sirenrope.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="", help="model bundle (.safetensors)")
    p.add_argument("--data", default="", help="JSONL events")
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--kv-dtype", choices=["f32", "bf16", "f16"], default="f32",
                   help="dtype the cached K/V rows are rounded to (default f32: none)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parse_with_config(p, argv, "evaluate")
    if not args.bundle or not args.data:
        p.error("--bundle and --data are required")
    try:
        bundle = load_bundle(args.bundle)
    except (OSError, BundleError) as e:
        print(f"sirenrope.evaluate: {args.bundle}: {e}", file=sys.stderr)
        return 2
    cfg = bundle.config
    bundle.model.kv_dtype = args.kv_dtype
    histories = read_histories(args.data, cfg)
    metrics = evaluate(bundle.model, histories, args.eval_fraction, chunk=args.chunk)
    metrics["kv_dtype"] = args.kv_dtype
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    print(f"bundle {args.bundle}\nmodel_id {bundle.model_id}\nvariant {cfg.variant}, d_model "
          f"{cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, window {cfg.window}, "
          f"d_angle {cfg.d_angle}, angle_hidden {cfg.angle_hidden}, kv dtype {args.kv_dtype}")
    print(f"{metrics['n_events']} events after the cutoff (ts_ms >= {metrics['cutoff_ts_ms']})")
    print(format_metrics(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
