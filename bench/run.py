"""One command for rotor's encoder benchmarks (DESIGN section 7): makes the bundles, builds the
release preset's benchmark programs, runs kernels_bench, decode_bench and torch_decode.py, and
prints the tables and each target with PASS or MISS.

    /usr/bin/python3 bench/run.py            # about 6 minutes on the project's 2-core machine
    /usr/bin/python3 bench/run.py --quick    # 1-2 minutes: fewer repetitions, no profile

Run from anywhere; it sets PYTHONPATH itself. Every figure is a median over repetitions taken
in this run, and every comparison is a ratio of two figures from this run (the machine is
shared and noisy: absolute times drift between runs). Raw results are kept in
build/bench-results/ (benchmark JSON, torch JSON, the printed report).

Bundles (build/bench-bundles/, regenerated each run; seeded, so byte-identical): the siren
variant on the synthetic schema with random perturbed weights (sirenrope.golden.perturbed_model)
for two models, each at windows 50, 200 and 1000:
  default  d_model 64, 2 heads, 2 layers, d_angle 4, angle hidden 16 (configs/demo.json's)
  paper    d_model 128, 4 heads, 2 layers, d_angle 4, angle hidden 64 (the paper's backbone)

The PyTorch side (bench/torch_decode.py) is the best incremental decode a PyTorch user would
write for the model (preallocated K/V ring buffers read in place, eager and torch.jit.script,
self-tested against sirenrope's decode_batch), on the same cases as decode_bench, cold windows
included; the ratios compare C++ with the fastest PyTorch setting and variant. The release
build directory is shared: the build runs under flock(1) on /tmp/rotor-release-build.lock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

MODELS = {
    "default": dict(d_model=64, n_heads=2, n_layers=2, d_angle=4, angle_hidden=16),
    "paper": dict(d_model=128, n_heads=4, n_layers=2, d_angle=4, angle_hidden=64),
}
WINDOWS = (50, 200, 1000)
SEED = 7

# Targets (DESIGN section 7).
KERNEL_RATIO = 4.0
ROOFLINE_FRACTION = 0.5
REENCODE_RATIO, REENCODE_WINDOW = 50.0, 200
# Issue 13: against the best PyTorch decode (bench/torch_decode.py's FastDecoder), C++ >= 10x at
# batch 1 and >= 4x at batch 64 with cold windows; the old batch-64 target on hot windows (3x)
# stays as information.
TORCH_B1, TORCH_B64_COLD, TORCH_B64_HOT = 10.0, 4.0, 3.0
# The release build directory is shared with other work: builds take this lock.
BUILD_LOCK = "/tmp/rotor-release-build.lock"


def log(msg: str) -> None:
    print(f"[run.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_bundles(out_dir: str) -> list[str]:
    import torch

    from sirenrope.bundle import export_bundle
    from sirenrope.config import ModelConfig, synthetic_schema
    from sirenrope.golden import perturbed_model

    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):  # Only this run's bundles: decode_bench takes the directory.
        if f.endswith(".safetensors"):
            os.remove(os.path.join(out_dir, f))
    paths = []
    for model, dims in MODELS.items():
        for w in WINDOWS:
            cfg = ModelConfig(variant="siren", window=w, schema=synthetic_schema(), **dims)
            path = os.path.join(out_dir, f"{model}-w{w}.bundle.safetensors")
            export_bundle(perturbed_model(cfg, SEED), path)
            paths.append(path)
    return paths


def run(cmd: list[str], log_path: str, **kw) -> None:
    """Runs cmd with its output in log_path; on failure shows the log's tail and stops."""
    log(" ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    with open(log_path, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, **kw).returncode
    if rc != 0:
        with open(log_path) as f:
            sys.stderr.write(f.read()[-6000:])
        raise SystemExit(f"run.py: {os.path.basename(cmd[0])} failed (exit {rc}); log: {log_path}")


def locked(cmd: list[str]) -> list[str]:
    """cmd under flock(1) on BUILD_LOCK where flock exists: others build the same directory."""
    flock = shutil.which("flock")
    return [flock, BUILD_LOCK, *cmd] if flock else cmd


def build(preset: str) -> str:
    build_dir = os.path.join(ROOT, "build", preset)
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        log(f"cmake --preset {preset}")
        subprocess.run(locked(["cmake", "--preset", preset]), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    # Only the two programs: a full build also compiles every test.
    log(f"cmake --build --preset {preset} (decode_bench, kernels_bench)")
    out = subprocess.run(locked(["cmake", "--build", "--preset", preset, "-j2", "--target",
                                 "decode_bench", "kernels_bench"]), cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-6000:] + out.stderr[-6000:])
        raise SystemExit("run.py: the release build failed")
    return os.path.join(build_dir, "bench")


# Where decode time goes: perf samples of decode_bench's own code, by kernel family.
PROFILE_GROUPS = (
    ("matrix products", re.compile(r"Gemm|Gemv|LayerImpl|Linear")),
    ("attention", re.compile(r"Attend")),
    ("LayerNorm", re.compile(r"LayerNorm")),
    ("SiLU", re.compile(r"Silu")),
    ("angles + rotation", re.compile(r"SinCos|Ordinal|RotatePairs|Angles|Sine")),
)
# The roofline measurements at decode_bench's start, not decode work.
PROFILE_SKIP = re.compile(r"FmaChains|StreamSum|MeasureReadBandwidth|MeasurePeakFma")


def profile(bench_dir: str, bundle_dir: str, cases: list[tuple[str, str]],
            out_dir: str) -> list[str]:
    """perf record each (kind, bundle) decode case for ~1.5 s; a table of the share of the
    user-space samples (roofline measurement left out) per kernel family."""
    if shutil.which("perf") is None:
        return ["(perf not found: no profile)"]
    lines = ["| case | " + " | ".join(g for g, _ in PROFILE_GROUPS) + " | other |",
             "| --- |" + " ---: |" * (len(PROFILE_GROUPS) + 1)]
    data = os.path.join(out_dir, "perf.data")
    for kind, name in cases:
        bundle = os.path.join(bundle_dir, f"{name}.bundle.safetensors")
        rec = subprocess.run(["perf", "record", "-q", "-o", data, "--",
                              os.path.join(bench_dir, "decode_bench"), f"--bundle={bundle}",
                              f"--benchmark_filter=^{kind}/", "--benchmark_min_time=1.5"],
                             cwd=ROOT, capture_output=True, text=True)
        if rec.returncode != 0:
            return [f"(perf record failed: {rec.stderr.strip()[-300:]})"]
        rep = subprocess.run(["perf", "report", "-q", "-i", data, "--no-children", "--stdio",
                              "--sort", "symbol", "--percent-limit", "0"], cwd=ROOT,
                             capture_output=True, text=True)
        shares = defaultdict(float)
        for line in rep.stdout.splitlines():
            m = re.match(r"\s*([0-9.]+)%\s+\[\.\]\s+(.*)", line)  # user-space symbols only
            if not m or PROFILE_SKIP.search(m.group(2)):
                continue
            group = next((g for g, rx in PROFILE_GROUPS if rx.search(m.group(2))), "other")
            shares[group] += float(m.group(1))
        total = sum(shares.values()) or 1.0
        lines.append(f"| {kind}/{name} | " + " | ".join(
            f"{100 * shares[g] / total:.0f}%" for g in [g for g, _ in PROFILE_GROUPS] + ["other"])
            + " |")
    os.remove(data)
    return lines


def medians(json_path: str) -> tuple[dict[str, dict], dict]:
    """(run_name -> the median aggregate, the context) of a Google Benchmark JSON file."""
    with open(json_path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median":
            out[b["run_name"]] = b
    return out, data["context"]


def ns(b: dict) -> float:
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b["cpu_time"] * scale


def bench_flags(min_time: float, reps: int, out: str) -> list[str]:
    return [f"--benchmark_min_time={min_time}", f"--benchmark_repetitions={reps}",
            "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=true", "--benchmark_format=console",
            "--benchmark_out_format=json", f"--benchmark_out={out}"]


def fmt_ns(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} us"
    return f"{v:.0f} ns"


def fmt_rate(v: float) -> str:
    return f"{v / 1e3:.1f}k" if v < 1e6 else f"{v / 1e6:.2f}M"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def kernel_table(res: dict[str, dict],
                 listing: list[str]) -> tuple[list[str], list[tuple[str, float]]]:
    """Rows 'kernel | shape | simd | scalar | ratio' pairing <kernel>/<impl>/<shape> names,
    in the benchmark's own order (`listing`)."""
    by = defaultdict(dict)
    order = []
    rank = {n: i for i, n in enumerate(listing)}
    for name, b in sorted(res.items(), key=lambda kv: rank.get(kv[0], len(rank))):
        parts = name.split("/")
        if len(parts) < 3:
            continue
        kernel, impl, shape = parts[0], parts[1], "/".join(parts[2:])
        key = (kernel, shape)
        if key not in by:
            order.append(key)
        by[key][impl] = ns(b)
    lines = ["| kernel | shape | SIMD | scalar | SIMD / scalar | >= 4x |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    ratios = []
    for kernel, shape in order:
        impls = by[(kernel, shape)]
        simd = impls.get("simd", impls.get("highway"))
        scalar = impls.get("scalar")
        if simd is None or scalar is None:
            continue
        r = scalar / simd
        ratios.append((f"{kernel} {shape}", r))
        extra = ""
        if "eigen" in impls:
            extra = f" (Eigen {fmt_ns(impls['eigen'])})"
        lines.append(f"| {kernel} | {shape} | {fmt_ns(simd)}{extra} | {fmt_ns(scalar)} | "
                     f"{r:.1f}x | {verdict(r >= KERNEL_RATIO)} |")
    return lines, ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~2 minutes: fewer, shorter repetitions")
    p.add_argument("--preset", default="release")
    p.add_argument("--skip-kernels", action="store_true", help="leave out kernels_bench")
    p.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch side")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="perf profile of the decode cases (default: on, off with --quick)")
    args = p.parse_args(argv)
    t_start = time.time()
    with open("/proc/loadavg") as f:
        load_start = " ".join(f.read().split()[:3])
    if args.quick:
        k_min, k_reps, d_min, d_reps, t_budget = 0.01, 3, 0.03, 3, 0.25
    else:
        k_min, k_reps, d_min, d_reps, t_budget = 0.05, 7, 0.2, 9, 2.5

    bundle_dir = os.path.join(ROOT, "build", "bench-bundles")
    out_dir = os.path.join(ROOT, "build", "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    log(f"bundles -> {bundle_dir}")
    make_bundles(bundle_dir)
    bench_dir = build(args.preset)

    kernels = {}
    if not args.skip_kernels:
        kjson = os.path.join(out_dir, "kernels_bench.json")
        run([os.path.join(bench_dir, "kernels_bench"), *bench_flags(k_min, k_reps, kjson)],
            os.path.join(out_dir, "kernels_bench.log"))
        kernels, _ = medians(kjson)
        listing = subprocess.run([os.path.join(bench_dir, "kernels_bench"),
                                  "--benchmark_list_tests"], capture_output=True, text=True,
                                 check=True).stdout.split()

    djson = os.path.join(out_dir, "decode_bench.json")
    run([os.path.join(bench_dir, "decode_bench"), f"--bundle={bundle_dir}",
         *bench_flags(d_min, d_reps, djson)], os.path.join(out_dir, "decode_bench.log"))
    dec, ctx = medians(djson)

    # (bundle, case, setting) -> ns of the faster variant (eager or script) and its name.
    torch_res: dict[tuple[str, str, str], float] = {}
    torch_variant: dict[tuple[str, str, str], str] = {}
    settings: list[str] = []
    torch_info: dict = {}
    torch_version = ""
    torch_tests: list[dict] = []
    if not args.skip_torch:
        tjson = os.path.join(out_dir, "torch_decode.json")
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
        run([sys.executable, os.path.join(ROOT, "bench", "torch_decode.py"), bundle_dir,
             "--budget", str(t_budget), "--json", tjson], os.path.join(out_dir, "torch.log"),
            env=env)
        with open(tjson) as f:
            tdata = json.load(f)
        torch_info = tdata["settings"]
        torch_version = tdata["torch"]
        torch_tests = tdata.get("self_test", [])
        for r in tdata["results"]:
            key = (r["bundle"], r["case"], r["setting"])
            if key not in torch_res or r["ns"] < torch_res[key]:
                torch_res[key] = r["ns"]
                torch_variant[key] = r.get("variant", "")
        settings = [s for s in ("one", "default") if s in torch_info]

    prof_lines: list[str] = []
    if args.profile if args.profile is not None else not args.quick:
        log("perf profile of the b1 and b64 cases")
        prof_lines = profile(bench_dir, bundle_dir,
                             [(k, f"{m}-w{w}") for m in MODELS for w in WINDOWS
                              for k in ("b1", "b64")], out_dir)

    # ---- report --------------------------------------------------------------------------
    peak = float(ctx["peak_fma_gflops"])
    bw = float(ctx["memory_gbs"])
    lines: list[str] = []
    cpu = platform.processor() or platform.machine()
    try:
        info = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)
        cpu = (f"{info['Model name'].strip()} (CPU family {info['CPU family'].strip()}, "
               f"model {info['Model'].strip()})")
    except (OSError, KeyError):
        pass
    lines.append(f"Machine: {cpu}, {os.cpu_count()} cores; kernels dispatch to "
                 f"{ctx['kernel_target']}; {'--quick' if args.quick else 'full'} run, "
                 f"medians of {d_reps} (decode) / {k_reps} (kernels) repetitions.")
    lines.append(f"Roofline (one thread, measured in this run by decode_bench): peak FMA "
                 f"{peak:.1f} GFLOP/s, streaming read {bw:.1f} GB/s (256 MiB buffer).")
    caches = ", ".join(f"L{c['level']}{'d' if c['type'] == 'Data' else ''} "
                       f"{c['size'] // 1024} KiB" for c in ctx.get("caches", [])
                       if c["type"] != "Instruction")
    lines.append(f"Caches (as Google Benchmark reads them): {caches}. PyTorch "
                 f"{torch_version or 'not run'}.")
    lines.append(f"Load average at the start of this run: {load_start} (the machine is shared).")
    if torch_tests:
        worst = {k: max(t[k] for t in torch_tests) for k in ("logits", "hidden", "kv")}
        lines.append(
            "PyTorch baseline (bench/torch_decode.py's FastDecoder: preallocated K/V ring "
            "buffers, views of them as attention operands, in-place row writes, batched "
            "projections, torch.inference_mode; eager and torch.jit.script, the faster counts) "
            f"against sirenrope's decode_batch, {len(torch_tests)} self-tests "
            f"({'all within' if all(t['ok'] for t in torch_tests) else 'NOT all within'} "
            f"{tdata['tolerance']:g}): max abs diff logits {worst['logits']:.1e}, hidden "
            f"{worst['hidden']:.1e}, K/V rows {worst['kv']:.1e}.")
    lines.append("")

    cases = []
    for model in MODELS:
        for w in WINDOWS:
            cases.append((model, w, f"{model}-w{w}"))

    def get(kind: str, name: str) -> dict:
        return dec[f"{kind}/{name}"]

    def torch_ratio(name: str, case: str, cxx_ns: float) -> tuple[str, float]:
        """PyTorch ns / C++ ns per setting (the faster variant of each, '(s)' marking the
        script), and the ratio to the fastest PyTorch."""
        keys = [(name, case, s) for s in settings if (name, case, s) in torch_res]
        if not keys:
            return "n/a", float("nan")
        best = min(torch_res[k] for k in keys)  # the fastest PyTorch is the one to beat
        text = " / ".join(f"{torch_res[k] / cxx_ns:.1f}x"
                          + (" (s)" if torch_variant.get(k) == "script" else "") for k in keys)
        return text, best / cxx_ns

    thr = " / ".join({"one": "1 thread", "default": "default"}[s] for s in settings) or "-"
    lines.append("### Decode step, C++ (one thread) vs re-encoding and vs PyTorch")
    lines.append("")
    lines.append("| model | W | b1 ns/event | b64 events/s | roofline b1 | roofline b64 | "
                 "FMA peak b1 / b64 | incremental vs re-encode (flops ratio) | vs PyTorch b1 "
                 f"({thr}) | vs PyTorch b64 ({thr}) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = {}
    for model, w, name in cases:
        b1, b64, renc = get("b1", name), get("b64", name), get("reencode", name)
        b1_ns = ns(b1)
        b64_ns = ns(b64) / 64
        b64_rate = b64["items_per_second"]
        re_ratio = ns(renc) / b1_ns
        flops_ratio = renc["flops"] / b1["flops"]
        t_re = [v for v in (torch_res.get((name, "reencode", s)) for s in settings) if v]
        re_torch = min(t_re) / b1_ns if t_re else float("inf")
        t1_text, t1 = torch_ratio(name, "b1", b1_ns)
        t64_text, t64 = torch_ratio(name, "b64", b64_ns)
        _, t1c = torch_ratio(name, "b1cold", ns(get("b1cold", name)))
        _, t64c = torch_ratio(name, "b64cold", ns(get("b64cold", name)) / 64)
        summary[name] = dict(b1=b1["roofline"], b64=b64["roofline"],
                             b1cold=get("b1cold", name)["roofline"],
                             b64cold=get("b64cold", name)["roofline"], re=re_ratio,
                             re_torch=re_torch, t1=t1, t64=t64, t1c=t1c, t64c=t64c)
        lines.append(f"| {model} | {w} | {b1_ns:,.0f} | {fmt_rate(b64_rate)} | "
                     f"{b1['roofline']:.2f} | {b64['roofline']:.2f} | "
                     f"{b1['compute']:.2f} / {b64['compute']:.2f} | {re_ratio:.0f}x "
                     f"({flops_ratio:.0f}x) | "
                     f"{t1_text} | {t64_text} |")
    lines.append("")
    lines.append("Roofline b1 / b64: max(flops / peak, bytes / bandwidth) / measured time, the "
                 "bytes read at the bandwidth measured (in this run) over a buffer the size of "
                 "the case's working set (weights + 1 or 64 windows: L2, L3 or memory). FMA peak: "
                 "(flops / peak) / time. Incremental vs re-encode: C++ re-encode time (fresh "
                 "window, W + 1 decode steps) / C++ b1 time; in brackets the ratio of their "
                 "flops, what it would be at equal efficiency. vs PyTorch: PyTorch time / C++ "
                 "time, per PyTorch setting: 1 thread (torch.set_num_threads(1) and "
                 "OPENBLAS_NUM_THREADS=1, process CPU time) / torch's defaults, nothing set "
                 "(torch.get_num_threads() = "
                 f"{torch_info.get('default', {}).get('torch_threads', '?')}, OpenBLAS's own "
                 "thread pool; wall-clock time); PyTorch is bench/torch_decode.py's FastDecoder "
                 "(the K/V windows preallocated and read in place), the faster of eager and "
                 "torch.jit.script (marked (s)). C++ times are thread CPU time, one thread.")
    lines.append("")

    lines.append("### Cold windows (the daemon's case: windows of many users, 128 MiB in all), "
                 "candidates, and the roofline as DESIGN section 7 writes it")
    lines.append("")
    lines.append("| model | W | flops/event | bytes/event (b1) | b1 cold ns/event | roofline | "
                 "b64 cold events/s | roofline | DRAM-roofline b1 / b64 (hot) | "
                 "candidates ns/cand | re-encode (C++) | re-encode (PyTorch, best) | "
                 f"vs PyTorch b1 cold ({thr}) | vs PyTorch b64 cold ({thr}) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                 "| ---: | ---: | ---: |")
    for model, w, name in cases:
        b1, b64 = get("b1", name), get("b64", name)
        c1, c64 = get("b1cold", name), get("b64cold", name)
        cand, renc = get("cand100", name), get("reencode", name)
        t_re = [torch_res[(name, "reencode", s)] for s in settings
                if (name, "reencode", s) in torch_res]
        lines.append(f"| {model} | {w} | {b1['flops'] / 1e6:.2f} M | {b1['bytes'] / 1e6:.2f} MB"
                     f" | {ns(c1):,.0f} | {c1['roofline']:.2f} | "
                     f"{fmt_rate(c64['items_per_second'])} | {c64['roofline']:.2f} | "
                     f"{b1['roofline_dram']:.2f} / {b64['roofline_dram']:.2f} | "
                     f"{ns(cand) / 100:,.0f} | {fmt_ns(ns(renc))} | "
                     f"{fmt_ns(min(t_re)) if t_re else 'n/a'} | "
                     f"{torch_ratio(name, 'b1cold', ns(c1))[0]} | "
                     f"{torch_ratio(name, 'b64cold', ns(c64) / 64)[0]} |")
    lines.append("")
    lines.append("Cold roofline: K/V bytes at the memory bandwidth plus the weights at the "
                 "bandwidth measured over a buffer of their size. DRAM-roofline: DESIGN section "
                 "7's bound, every byte (K/V and weights / batch) at the memory bandwidth; above "
                 "1 where the working set is in cache, so it says nothing there. vs PyTorch "
                 "cold: PyTorch time / C++ time per event on the same cold cases (the same "
                 "number of users, round robin), per setting as in the table above.")
    lines.append("")

    lines.append("### Read bandwidths used for the bounds (GB/s, one thread, this run)")
    lines.append("")
    lines.append("| bundle | weights MB | window MB (K/V, all blocks) | weights GB/s | "
                 "weights + 1 window GB/s | weights + 64 windows GB/s | memory GB/s (256 MiB) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for _, _, name in cases:
        kv = dict(f.split("=", 1) for f in ctx[f"bundle.{name}"].split())
        lines.append(f"| {name} | {int(kv['weight_bytes']) / 1e6:.2f} | "
                     f"{int(kv['window_bytes']) / 1e6:.2f} | "
                     f"{float(kv['read_gbs_weights']):.0f} | "
                     f"{float(kv['read_gbs_b1']):.0f} | {float(kv['read_gbs_b64']):.0f} | "
                     f"{bw:.0f} |")
    lines.append("")

    if prof_lines:
        lines.append("### Where decode time goes (perf samples of decode_bench, share of "
                     "user-space time, roofline measurement left out)")
        lines.append("")
        lines += prof_lines
        lines.append("")

    ratios: list[tuple[str, float]] = []
    if kernels:
        klines, ratios = kernel_table(kernels, listing)
        lines.append("### Kernels, SIMD vs scalar (kernels_bench, ns per call)")
        lines.append("")
        lines += klines
        lines.append("")

    # ---- targets -------------------------------------------------------------------------
    lines.append("### Targets")
    lines.append("")
    if ratios:
        misses = [(n, r) for n, r in ratios if r < KERNEL_RATIO]
        angle = [(n, r) for n, r in ratios if n.startswith("AngleRotate")]
        lines.append(f"- {verdict(all(r >= KERNEL_RATIO for _, r in angle))} angle + rotation "
                     f"per token >= {KERNEL_RATIO:.0f}x scalar: "
                     + ", ".join(f"{n.split()[1]} {r:.1f}x" for n, r in angle))
        lines.append(f"- {verdict(not misses)} every SIMD kernel >= {KERNEL_RATIO:.0f}x scalar: "
                     f"{len(ratios) - len(misses)}/{len(ratios)} shapes; below: "
                     + (", ".join(f"{n} {r:.1f}x" for n, r in misses) or "none"))
    for name, s in summary.items():
        figs = {k: s[k] for k in ("b1", "b1cold", "b64", "b64cold")}
        ok = all(v >= ROOFLINE_FRACTION for v in figs.values())
        lines.append(f"- {verdict(ok)} decode within 2x of the roofline bound, {name}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in figs.items()))
    for name, s in summary.items():
        if name.endswith(f"-w{REENCODE_WINDOW}"):
            worst = min(s["re"], s["re_torch"])
            lines.append(f"- {verdict(worst >= REENCODE_RATIO)} incremental >= "
                         f"{REENCODE_RATIO:.0f}x re-encode at window {REENCODE_WINDOW}, {name}: "
                         f"{s['re']:.0f}x the C++ re-encode, {s['re_torch']:.0f}x PyTorch's "
                         f"batched forward (the faster re-encode counts)")
    if torch_res:
        for key, target, label, info in (
                ("t1", TORCH_B1, "batch 1", ""),
                ("t64c", TORCH_B64_COLD, "batch 64 with cold windows", ""),
                ("t64", TORCH_B64_HOT, "batch 64 with hot windows", " (information: the "
                 "old target)"),
                ("t1c", TORCH_B1, "batch 1 with cold windows", " (information)")):
            vals = {n: s[key] for n, s in summary.items()}
            ok = all(v >= target for v in vals.values())
            lines.append(f"- {verdict(ok)}{info} C++ >= {target:.0f}x PyTorch at {label} (vs "
                         f"the fastest PyTorch setting and variant): "
                         + ", ".join(f"{n} {v:.1f}x" for n, v in vals.items()))
    lines.append("")
    lines.append("Roofline target: every decode measurement of the case at >= "
                 f"{ROOFLINE_FRACTION} of its bound: b1 and b64 against the bandwidth of their "
                 "working set's size, b1cold and b64cold with K/V from memory (see the tables).")
    lines.append("")
    lines.append(f"Total run time {time.time() - t_start:.0f} s. Raw results: "
                 f"{os.path.relpath(out_dir, ROOT)}/.")
    report = "\n".join(lines)
    print(report)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
