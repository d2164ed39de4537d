#!/usr/bin/env bash
# Lints rotor's C++: clang-format (.clang-format), include boundaries (third-party headers stay
# in the module that owns them, internal/ headers stay in their module) and clang-tidy
# (.clang-tidy, with build/debug's compile database).
#
#   tools/lint.sh          check everything; non-zero exit on any finding
#   tools/lint.sh --fix    rewrite files with clang-format first, then check
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

fix=0
for arg in "$@"; do
  case "${arg}" in
    --fix) fix=1 ;;
    -h | --help)
      sed -n '2,7p' "$0"
      exit 0
      ;;
    *)
      echo "lint.sh: unknown argument '${arg}'" >&2
      exit 2
      ;;
  esac
done

# Tracked files plus new ones not yet added, minus ignored ones.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.h' '*.cc' | sort -u)
if ((${#files[@]} == 0)); then
  echo "lint.sh: no C++ files"
  exit 0
fi
failed=0

# 1. clang-format.
if ((fix)); then
  clang-format -i "${files[@]}"
fi
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "lint.sh: clang-format: files above need formatting (tools/lint.sh --fix)" >&2
  failed=1
fi

# 2. Include boundaries. "<header prefix>|<owning folder>": only files under the owning folder
#    may include headers starting with the prefix (docs/architecture.md, "Third-party code").
owners=(
  "rocksdb/|storage/"
  "librdkafka/|pipeline/"
  "simdjson|encoders/"
  "yaml-cpp/|config/"
  "boost/beast|api/"
  "boost/asio|api/"
  "hwy/|encoders/"
  "Eigen/|encoders/"
  "unsupported/Eigen/|encoders/"
)
for rule in "${owners[@]}"; do
  prefix="${rule%%|*}"
  owner="${rule##*|}"
  while IFS= read -r hit; do
    [[ -z "${hit}" || "${hit}" == "${owner}"* ]] && continue
    echo "${hit}: <${prefix}...> belongs to ${owner} only" >&2
    failed=1
  done < <(grep -HnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*<${prefix}" "${files[@]}" || true)
done
while IFS= read -r hit; do
  [[ -z "${hit}" ]] && continue
  file="${hit%%:*}"
  module="$(sed -E 's/.*#[[:space:]]*include[[:space:]]*"([^/]+)\/internal\/.*/\1/' <<<"${hit}")"
  if [[ "${file}" != "${module}/"* ]]; then
    echo "${hit}: ${module}/internal/ is private to ${module}/" >&2
    failed=1
  fi
done < <(grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^/"]+/internal/' "${files[@]}" || true)

# 3. clang-tidy, over the translation units of the debug build (headers through HeaderFilterRegex).
db_dir="${ROTOR_ROOT}/build/debug"
if [[ ! -f "${db_dir}/compile_commands.json" ]]; then
  cmake --preset debug >/dev/null
fi
units=()
for file in "${files[@]}"; do
  [[ "${file}" == *.cc ]] || continue
  if grep -qF "\"file\": \"${ROTOR_ROOT}/${file}\"" "${db_dir}/compile_commands.json"; then
    units+=("${file}")
  else
    echo "lint.sh: clang-tidy skips ${file}: not in the debug build's compile database"
  fi
done
# Each unit's output is printed only when it has findings; "N warnings generated." is noise
# from suppressed third-party diagnostics. -Wno-unknown-warning-option: the database holds
# GCC-only flags (-Wlogical-op) that clang does not know.
tidy_one() {
  local out
  if ! out="$(clang-tidy --quiet -p "$1" --extra-arg=-Wno-unknown-warning-option "$2" 2>&1)"; then
    grep -vE '^[0-9]+ warnings? generated\.$' <<<"${out}" >&2
    echo "lint.sh: clang-tidy: findings in $2" >&2
    return 1
  fi
}
export -f tidy_one
if ((${#units[@]})); then
  if ! printf '%s\0' "${units[@]}" |
    xargs -0 -n1 -P "$(nproc)" bash -c 'tidy_one "$0" "$1"' "${db_dir}"; then
    failed=1
  fi
fi

if ((failed)); then
  echo "lint.sh: FAILED" >&2
  exit 1
fi
echo "lint.sh: ok (${#files[@]} files formatted, ${#units[@]} translation units tidy)"
