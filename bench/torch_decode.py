"""The decode benchmark's PyTorch side: the same bundles and cases as bench/decode_bench.cc,
run by the reference model (python/sirenrope), so the C++/PyTorch ratios compare one model.

    PYTHONPATH=python /usr/bin/python3 bench/torch_decode.py build/bench-bundles [more paths]
        [--budget 1.5] [--json out.json]

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

For each bundle (a file, or every *.safetensors in a directory), three cases:

  b1        model.decode(cache, events, r): one event appended to a full window (W rows);
            the cache drops its oldest row, so it stays full.
  b64       model.decode_batch(caches, events): one event for each of 64 users with full
            windows.
  reencode  model.forward(batch) over W + 1 events of one user: the causal full forward that
            serving without a cache would run per event. The Batch (padding, time features)
            is built outside the timed region, as the C++ side decodes featurised inputs.

Full windows are made by one forward over W events (exactly the cache decode would build;
python/tests/test_cache_exactness.py holds the two equal), and the 64 users' caches are
copies of one. Each case is timed in samples of k calls (k sized to ~50 ms), and the median
over samples is reported in ns per event (per re-encode); samples continue until `budget`
seconds have passed (at least 3, at most 15). Inference only: torch.no_grad, model.eval().
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch

from sirenrope.bundle import load_bundle
from sirenrope.config import ModelConfig
from sirenrope.features import EventArrays, featurize
from sirenrope.model import GenerativeRecommender, KvCache, make_batch

BATCH = 64
POOL = 256  # distinct events decoded in turn (as decode_bench.cc)


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


def full_cache(model: GenerativeRecommender, ev: EventArrays) -> KvCache:
    """The cache after decoding all of ``ev`` (len(ev) == window), built by one forward."""
    cfg = model.cfg
    batch = make_batch([ev], [0], cfg)
    with torch.no_grad():
        out = model(batch)
    w = cfg.window
    return KvCache(k=[t[0, -w:].clone() for t in out["k"]], v=[t[0, -w:].clone() for t in out["v"]],
                   pos=batch.pos[0, -w:].clone(), next_pos=len(ev),
                   last_ts_ms=int(ev.ts_ms[-1]), events_seen=len(ev))


def median_ns(fn: Callable[[], None], per_call: int, budget: float,
              clock: Callable[[], float]) -> tuple[float, int]:
    """Median ns per unit over samples of k calls timed with ``clock``; ``per_call`` units per
    call."""
    fn()  # warm-up (allocator, lazy init)
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


def bench_bundle(path: str, setting: str, budget: float) -> list[dict]:
    clock = time.process_time if setting == "one" else time.perf_counter
    b = load_bundle(path)
    model, cfg = b.model, b.config
    model.eval()
    w = cfg.window
    ev = featurize(random_events(cfg, w + 1 + POOL + BATCH, seed=42), cfg)
    name = case_name(path)
    rows = []

    def record(case: str, ns: float, samples: int) -> None:
        rows.append({"bundle": name, "case": case, "setting": setting, "ns": ns,
                     "samples": samples, "clock": clock.__name__})

    # Batch 1: one user, full window; decode cycles through the pool of events.
    cache = full_cache(model, ev.slice(0, w))
    pool = ev.slice(w, w + POOL + BATCH)
    state = {"r": 0}

    def b1() -> None:
        model.decode(cache, pool, state["r"])
        state["r"] = (state["r"] + 1) % POOL

    record("b1", *median_ns(b1, 1, budget, clock))

    # Batch 64: 64 users with full windows.
    caches = [copy.deepcopy(cache) for _ in range(BATCH)]
    state["r"] = 0

    def b64() -> None:
        model.decode_batch(caches, pool.slice(state["r"], state["r"] + BATCH))
        state["r"] = (state["r"] + BATCH) % POOL

    record("b64", *median_ns(b64, BATCH, budget, clock))

    # Re-encode: the full forward over W + 1 events.
    batch = make_batch([ev.slice(0, w + 1)], [0], cfg)

    def reencode() -> None:
        with torch.no_grad():
            model(batch)

    record("reencode", *median_ns(reencode, 1, budget, clock))
    return rows


SETTINGS = ("one", "default")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker(paths: list[str], setting: str, budget: float) -> int:
    """Runs every bundle in one setting; prints one JSON object per result line."""
    if setting == "one":
        torch.set_num_threads(1)
    info = {"setting": setting, "torch_threads": torch.get_num_threads(),
            "env": {v: os.environ.get(v) for v in THREAD_VARS}}
    print(json.dumps({"info": info}), flush=True)
    for path in paths:
        for row in bench_bundle(path, setting, budget):
            print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="bundle files or directories")
    p.add_argument("--budget", type=float, default=1.5, help="seconds per case and setting")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    paths = bundle_paths(args.paths)
    if args.worker:
        return worker(paths, args.worker, args.budget)
    results, info = [], {}
    for setting in SETTINGS:
        env = dict(os.environ)
        for v in THREAD_VARS:
            if setting == "one":
                env[v] = "1"
        cmd = [sys.executable, os.path.abspath(__file__), *paths, "--budget", str(args.budget),
               "--worker", setting]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            row = json.loads(line)
            if "info" in row:
                info[setting] = row["info"]
                continue
            results.append(row)
            print(f"{row['bundle']:>16} {row['case']:>9} {setting:>8} "
                  f"{row['ns'] / 1e3:10.1f} us  ({row['samples']} samples, {row['clock']})",
                  flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"torch_decode: the {setting} worker failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "settings": info, "results": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
