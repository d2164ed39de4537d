#!/usr/bin/env bash
# What bench/load.py's pictures need, installed idempotently and quietly (prints nothing when
# everything is already there):
#   - Debian's python3-matplotlib (the throughput/latency chart, /usr/bin/python3, Agg backend);
#   - with --flame: perf (Debian's linux-perf), the `inferno` crate's inferno-collapse-perf and
#     inferno-flamegraph in build/tools/inferno (cargo install, pinned), and
#     kernel.perf_event_paranoid low enough for `perf record -p` of the daemon.
# Usage: tools/bench_setup.sh [--flame]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFERNO_VERSION="0.11.21"
INFERNO_ROOT="$ROOT/build/tools/inferno"
flame=0
for arg in "$@"; do
  case "$arg" in
    --flame) flame=1 ;;
    *) echo "bench_setup.sh: unknown argument '$arg' (usage: tools/bench_setup.sh [--flame])" >&2; exit 2 ;;
  esac
done

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "bench_setup.sh: installing ${missing[*]} (apt-get)" >&2
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

apt_install python3-matplotlib

if ((flame)); then
  [[ -x /usr/bin/perf ]] || apt_install linux-perf
  if [[ ! -x "$INFERNO_ROOT/bin/inferno-flamegraph" || ! -x "$INFERNO_ROOT/bin/inferno-collapse-perf" ]]; then
    cargo="$(command -v cargo || echo /root/.cargo/bin/cargo)"
    if [[ ! -x "$cargo" ]]; then
      echo "bench_setup.sh: cargo not found (needed to install the inferno flame graph tools)" >&2
      exit 1
    fi
    echo "bench_setup.sh: installing inferno $INFERNO_VERSION into $INFERNO_ROOT (cargo, a few minutes)" >&2
    nice -n 10 "$cargo" install --quiet --locked --version "$INFERNO_VERSION" --root "$INFERNO_ROOT" \
      inferno >/dev/null
  fi
  # perf record -p of another process needs perf_event_paranoid <= 1 without CAP_PERFMON
  # (root has it, but containers often drop it: lower the setting whenever it is above 1).
  paranoid="$(cat /proc/sys/kernel/perf_event_paranoid)"
  if ((paranoid > 1)); then
    echo "bench_setup.sh: lowering kernel.perf_event_paranoid from $paranoid to 1 so that perf" \
      "can sample the daemon (sysctl; reset it with: sysctl kernel.perf_event_paranoid=$paranoid)" >&2
    as_root sysctl -q kernel.perf_event_paranoid=1 ||
      echo "bench_setup.sh: could not lower kernel.perf_event_paranoid; perf may refuse" >&2
  fi
fi
