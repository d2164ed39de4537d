#!/usr/bin/env bash
# Runs every rotor test: the one command for developers and CI (.ci/run execs it).
#
#   tools/test.sh            setup, debug build + ctest (ASan/UBSan), Kafka integration tests,
#                            fuzz, lint, pytest, golden check
#   tools/test.sh --quick    the same without lint
#   tools/test.sh --load     also the end-to-end load benchmark (bench/load.py, about 10 min;
#                            ROTOR_LOAD_ARGS passes it arguments, e.g. "--models default")
#   ROTOR_SLOW=1 tools/test.sh   also run the slow tests (passed through to ctest and pytest)
#   ROTOR_FUZZ_SECONDS=N tools/test.sh   fuzz for N seconds (default 60; 0 skips the fuzz step)
#
# Fails fast: the first failing step stops the run with a banner naming it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

quick=0
load=0
for arg in "$@"; do
  case "${arg}" in
    --quick) quick=1 ;;
    --load) load=1 ;;
    -h | --help)
      sed -n '2,12p' "$0"
      exit 0
      ;;
    *)
      echo "test.sh: unknown argument '${arg}' (try --help)" >&2
      exit 2
      ;;
  esac
done

if [[ -n "${ROTOR_SLOW:-}" ]]; then
  export ROTOR_SLOW
fi

start_all=${SECONDS}
current=""
step_start=0
summary=()

begin() {
  current="$1"
  step_start=${SECONDS}
  printf '\n==== test.sh: %s ====\n' "${current}"
}
end() {
  summary+=("${current}: ${1:-ok} ($((SECONDS - step_start))s)")
  current=""
}
on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ -n "${current}" ]]; then
    printf '\n==== test.sh: FAILED in step "%s" (exit %d, after %ds) ====\n' \
      "${current}" "${rc}" "$((SECONDS - start_all))" >&2
  fi
}
trap on_exit EXIT

begin "setup (tools/setup.sh)"
tools/setup.sh
end

begin "debug build + ctest (ASan/UBSan)"
cmake --preset debug >/dev/null
cmake --build --preset debug
ctest --preset debug --output-on-failure -j2 -LE integration
end

# A real single-node Kafka broker (KRaft) from Maven Central's jars, run by CTest fixtures that
# stop it even when a test fails; see docs/kafka.md. Its state and logs: build/debug/kafka/ctest.
# kafka.memory measures the release binary's peak RSS (sanitizers multiply memory), so the
# rotor target of the release preset is built first.
begin "integration tests (real Kafka broker, ctest -L integration)"
tools/kafka/fetch.sh
cmake --preset release >/dev/null
cmake --build --preset release --target rotor
ctest --preset debug -L integration --output-on-failure
end

# libFuzzer, clang-built by the `fuzz` preset, over four parsers of untrusted bytes:
#   encoders_bundle_fuzzer        the bundle loader (encoders/bundle_fuzzer.cc): seeds from
#                                 testdata/golden (bundles, their configs, expected files) plus
#                                 tiny bundles of every variant exported by sirenrope;
#   encoders_event_parser_fuzzer  input-topic messages (encoders/event_parser_fuzzer.cc): seeds
#                                 are 20 golden event lines and a few edge cases;
#   storage_key_layout_fuzzer     RocksDB key/value decoders and the state changelog's records
#                                 (storage/internal/key_layout_fuzzer.cc);
#   api_router_fuzzer             HTTP API requests and score bodies (api/router_fuzzer.cc): seeds
#                                 are one request per route, with golden candidates.
# ROTOR_FUZZ_SECONDS is split 1/3, 1/4, 1/12, 1/3 between them (each at least 1 s). The corpus
# each grows persists under build/fuzz/<name>/corpus. Any crash, sanitizer report or broken
# invariant fails the step and leaves the input in build/fuzz/<name>/artifacts/.
fuzz_seconds="${ROTOR_FUZZ_SECONDS:-60}"
if [[ "${fuzz_seconds}" == "0" ]]; then
  summary+=("fuzz: skipped (ROTOR_FUZZ_SECONDS=0)")
else
  begin "fuzz (libFuzzer: bundle loader, event parser, key layout, API router; ${fuzz_seconds}s)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target encoders_bundle_fuzzer encoders_event_parser_fuzzer \
    storage_key_layout_fuzzer api_router_fuzzer

  # Fresh seeds and the corpus/artifacts folders of fuzzer `name`; prints the folder.
  fuzz_prepare() {
    local dir="build/fuzz/$1"
    rm -rf "${dir}/seeds"
    mkdir -p "${dir}/seeds" "${dir}/corpus" "${dir}/artifacts"
    echo "${dir}"
  }
  # Runs fuzzer binary $2 (named $1) for $3 seconds over its corpus and seeds; extra libFuzzer
  # flags follow. Fails the step with the log's tail when it finds something.
  fuzz_run() {
    local name="$1" binary="$2" seconds="$3" dir="build/fuzz/$1"
    shift 3
    echo "fuzz: ${name} for ${seconds}s"
    "${binary}" -max_total_time="${seconds}" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
      -artifact_prefix="${dir}/artifacts/" "$@" "${dir}/corpus" "${dir}/seeds" \
      2>"${dir}/log" || {
      tail -n 60 "${dir}/log" >&2
      echo "test.sh: the fuzzer ${name} failed; the input is in ${dir}/artifacts/" >&2
      exit 1
    }
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::)' "${dir}/log" || true
  }
  fuzz_share() {  # fuzz_share DIVISOR: fuzz_seconds / DIVISOR, at least 1.
    local s=$((fuzz_seconds / $1))
    echo $((s < 1 ? 1 : s))
  }

  fuzz_dir="$(fuzz_prepare bundle_fuzzer)"
  "${ROTOR_PY}" - "${fuzz_dir}/seeds" testdata/golden <<'PY'
import os, shutil, sys
import torch
from sirenrope.bundle import bundle_bytes
from sirenrope.config import (VARIANTS, ActionSpec, CategoricalSpec, InputSchema, ItemSpec,
                              LabelSpec, ModelConfig)
from sirenrope.model import GenerativeRecommender
from sirenrope.safetensors_io import decode
out, golden = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(golden)):
    if name.endswith(".safetensors"):
        shutil.copy(os.path.join(golden, name), out)
    if name.endswith(".bundle.safetensors"):
        with open(os.path.join(golden, name), "rb") as f:
            config = decode(f.read())[1]["rotor.config"]
        with open(os.path.join(out, name.replace(".safetensors", ".config.json")), "w") as f:
            f.write(config)
torch.manual_seed(0)
for variant in VARIANTS:  # Small valid bundles: mutations of them reach the deep checks.
    item = ItemSpec("id", 1, 2) if variant in ("ordinal", "siren") else ItemSpec("features", 1)
    schema = InputSchema(item=item, actions=[ActionSpec("a", "log1p")],
                         labels=[LabelSpec("l", "a")],
                         categorical=[CategoricalSpec("c", "vocab", 1, values=["x"]),
                                      CategoricalSpec("h", "hash", 1, buckets=2)])
    cfg = ModelConfig(variant=variant, d_model=2, n_heads=1, n_layers=1, d_angle=1,
                      angle_hidden=1, window=2, action_hidden=1, head_hidden=1, ffn_mult=1,
                      schema=schema)
    with open(os.path.join(out, f"tiny_{variant}.bundle.safetensors"), "wb") as f:
        f.write(bundle_bytes(GenerativeRecommender(cfg)))
PY
  fuzz_run bundle_fuzzer build/fuzz/encoders/encoders_bundle_fuzzer "$(fuzz_share 3)" \
    -dict=encoders/bundle_fuzzer.dict

  # Event parser seeds: the first two lines of the golden event files (20 messages, one per
  # file) and two events that reach the parser's refusal-precedence paths.
  fuzz_dir="$(fuzz_prepare event_parser_fuzzer)"
  n=0
  for events in testdata/golden/*.events.jsonl; do
    while IFS= read -r line && ((n < 20)); do
      printf '%s' "${line}" >"${fuzz_dir}/seeds/golden-${n}.json"
      n=$((n + 1))
    done < <(head -n 2 "${events}")
  done
  printf '%s' '{"event_id":"e","user_id":"u","ts_ms":1,"item":{"id":"i","features":[1,"x",2,3,4,5,6,7]},"action":{"click":true,"click":1,"like":null}}' \
    >"${fuzz_dir}/seeds/edge-types.json"
  printf '%s' '{"event_id":"e","user_id":"u","ts_ms":18446744073709551615,"item":[],"action":[],"attrs":{"topic":1,"topic":"tech"}}' \
    >"${fuzz_dir}/seeds/edge-ranges.json"
  fuzz_run event_parser_fuzzer build/fuzz/encoders/encoders_event_parser_fuzzer "$(fuzz_share 4)" \
    -dict=encoders/event_parser_fuzzer.dict

  # Key layout seeds: a valid users value (the whole input is both key and value), and a
  # rows key and an offsets key (first byte = key length, the rest split into key and value).
  fuzz_dir="$(fuzz_prepare key_layout_fuzzer)"
  printf '\x01\x00\x00\x00%b%b%b%b%b%b%b\x02\x00\x00\x00m1\x01\x00\x00\x00\x02\x00\x00\x00e1' \
    '\x00\x00\x00\x00\x00\x00\x00\x00' '\x03\x00\x00\x00\x00\x00\x00\x00' \
    '\x02\x00\x00\x00\x00\x00\x00\x00' '\x00\x00\x00\x00\x00\x00\x00\x00' \
    '\x04\x00\x00\x00\x00\x00\x00\x00' '\x02\x00\x00\x00\x00\x00\x00\x00' \
    '\x01\x00\x00\x00\x00\x00\x00\x00' >"${fuzz_dir}/seeds/users-value"
  printf '\x0b\x02u1\x00\x00\x00\x00\x00\x00\x00\x07' >"${fuzz_dir}/seeds/rows-key"
  printf '\x09\x04in-1\x00\x00\x00\x03\x2a\x00\x00\x00\x00\x00\x00\x00' \
    >"${fuzz_dir}/seeds/offsets-key-value"
  # The state changelog's records: a marker (next offset 42, watermark 0), a base, a row.
  printf '\x0ao\x04in-1\x00\x00\x00\x03%b%b' '\x2a\x00\x00\x00\x00\x00\x00\x00' \
    '\x01\x00\x00\x00\x00\x00\x00\x00' >"${fuzz_dir}/seeds/changelog-marker"
  printf '\x0ab\x04in-1\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00' \
    >"${fuzz_dir}/seeds/changelog-base"
  printf '\x0cr\x02u1\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x80\x3f' \
    >"${fuzz_dir}/seeds/changelog-row"
  fuzz_run key_layout_fuzzer build/fuzz/storage/storage_key_layout_fuzzer "$(fuzz_share 12)"

  # API router seeds: "<method>\n<target>\n<body>", one per route, the score bodies with two
  # golden candidates (the fuzzer's store holds u-short and a corrupt "u%").
  fuzz_dir="$(fuzz_prepare router_fuzzer)"
  for route in healthz readyz metrics v1/users/u-short v1/users/u%25 v1/users/nobody \
    "v1/users/u-short/tensors?dtype=bf16"; do
    printf 'GET\n/%s\n' "${route}" >"${fuzz_dir}/seeds/get-${route//[^a-z0-9]/_}"
  done
  candidates="$(head -n 2 testdata/golden/siren.short.candidates.jsonl | paste -sd, -)"
  printf 'POST\n/v1/users/u-short/score\n{"ts_ms":1767612010682,"candidates":[%s]}' \
    "${candidates}" >"${fuzz_dir}/seeds/post-user-score"
  printf 'POST\n/v1/score\n{"ts_ms":1767612010682,"users":[{"user_id":"u-short","candidates":[%s]},{"user_id":"u%%","candidates":[%s]},{"user_id":"new","candidates":[]}]}' \
    "${candidates}" "${candidates}" >"${fuzz_dir}/seeds/post-score"
  fuzz_run router_fuzzer build/fuzz/api/api_router_fuzzer "$(fuzz_share 3)" \
    -dict=api/router_fuzzer.dict
  end
fi

if ((quick)); then
  summary+=("lint: skipped (--quick)")
else
  begin "lint (tools/lint.sh)"
  tools/lint.sh
  end
fi

# docker-compose.yml must validate (Debian's docker-compose checks it without an engine) and
# scale (--scale rotor=N), the Kubernetes manifests must validate against the API's schemas
# (kubernetes-validate, offline) and hang together, and the configs of both must pass the
# daemon's validator; broken variants of each must be refused (docs/deploy.md, What is checked).
begin "deployment files (tools/compose_check.sh)"
tools/compose_check.sh
end

begin "python tests (pytest python/tests)"
pytest_rc=0
"${ROTOR_PY}" -m pytest python/tests -q || pytest_rc=$?
if ((pytest_rc == 5)); then
  echo "test.sh: pytest collected no tests from python/tests; there must be some" >&2
  exit 1
elif ((pytest_rc != 0)); then
  exit "${pytest_rc}"
fi
end

begin "golden files (sirenrope.golden --check)"
"${ROTOR_PY}" -m sirenrope.golden --check
end

# The load benchmark: fixed input rates into a real broker, events/s and event-to-publish
# latency beside the same run's one-batch-at-a-time baseline (docs/performance.md). Figures,
# not pass/fail: it fails only when a run breaks (an event without its delta, rotor exiting).
if ((load)); then
  begin "load benchmark (bench/load.py ${ROTOR_LOAD_ARGS:-})"
  # shellcheck disable=SC2086 # ROTOR_LOAD_ARGS is a list of arguments.
  "${ROTOR_PY}" bench/load.py ${ROTOR_LOAD_ARGS:-}
  end
fi

summary_line="$(printf '%s; ' "${summary[@]}")"
printf '\n==== test.sh: PASSED in %ds: %s%s ====\n' "$((SECONDS - start_all))" \
  "${summary_line%; }" "${ROTOR_SLOW:+ (ROTOR_SLOW=${ROTOR_SLOW})}"
