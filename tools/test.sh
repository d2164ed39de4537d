#!/usr/bin/env bash
# Runs every rotor test: the one command for developers and CI (.ci/run execs it).
#
#   tools/test.sh            setup, debug build + ctest (ASan/UBSan), Kafka integration tests,
#                            fuzz, lint, pytest, golden check
#   tools/test.sh --quick    the same without lint
#   ROTOR_SLOW=1 tools/test.sh   also run the slow tests (passed through to ctest and pytest)
#   ROTOR_FUZZ_SECONDS=N tools/test.sh   fuzz for N seconds (default 60; 0 skips the fuzz step)
#
# Fails fast: the first failing step stops the run with a banner naming it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

quick=0
for arg in "$@"; do
  case "${arg}" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,10p' "$0"
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
begin "integration tests (real Kafka broker, ctest -L integration)"
tools/kafka/fetch.sh
ctest --preset debug -L integration --output-on-failure
end

# libFuzzer over the bundle loader (encoders/bundle_fuzzer.cc), clang-built by the `fuzz`
# preset. Seeds come from testdata/golden (bundles, their configs, expected files) plus tiny
# bundles of every variant exported by sirenrope; the corpus it grows persists under build/fuzz.
# Any crash, sanitizer report or broken invariant fails the step and leaves the input in
# build/fuzz/bundle_fuzzer/artifacts/.
fuzz_seconds="${ROTOR_FUZZ_SECONDS:-60}"
if [[ "${fuzz_seconds}" == "0" ]]; then
  summary+=("fuzz: skipped (ROTOR_FUZZ_SECONDS=0)")
else
  begin "fuzz (libFuzzer, bundle loader, ${fuzz_seconds}s)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target encoders_bundle_fuzzer
  fuzz_dir=build/fuzz/bundle_fuzzer
  rm -rf "${fuzz_dir}/seeds"
  mkdir -p "${fuzz_dir}/seeds" "${fuzz_dir}/corpus" "${fuzz_dir}/artifacts"
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
  build/fuzz/encoders/encoders_bundle_fuzzer -max_total_time="${fuzz_seconds}" \
    -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 -dict=encoders/bundle_fuzzer.dict \
    -artifact_prefix="${fuzz_dir}/artifacts/" "${fuzz_dir}/corpus" "${fuzz_dir}/seeds" \
    2>"${fuzz_dir}/log" || {
    tail -n 60 "${fuzz_dir}/log" >&2
    echo "test.sh: the fuzzer failed; the input is in ${fuzz_dir}/artifacts/" >&2
    exit 1
  }
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::)' "${fuzz_dir}/log" || true
  end
fi

if ((quick)); then
  summary+=("lint: skipped (--quick)")
else
  begin "lint (tools/lint.sh)"
  tools/lint.sh
  end
fi

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

summary_line="$(printf '%s; ' "${summary[@]}")"
printf '\n==== test.sh: PASSED in %ds: %s%s ====\n' "$((SECONDS - start_all))" \
  "${summary_line%; }" "${ROTOR_SLOW:+ (ROTOR_SLOW=${ROTOR_SLOW})}"
