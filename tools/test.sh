#!/usr/bin/env bash
# Runs every rotor test: the one command for developers and CI (.ci/run execs it).
#
#   tools/test.sh            setup, debug build + ctest (ASan/UBSan), lint, pytest, golden check
#   tools/test.sh --quick    the same without lint
#   ROTOR_SLOW=1 tools/test.sh   also run the slow tests (passed through to ctest and pytest)
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
      sed -n '2,8p' "$0"
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
ctest --preset debug --output-on-failure -j2
end

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
