#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a Kubernetes cluster (docs/deploy.md):
#   1. docker-compose.yml is a valid Compose file (`docker-compose config -q`, Debian's
#      docker-compose, which tools/setup.sh installs; it needs no engine for this), and its
#      rotor service scales with `--scale rotor=N` (tools/deploy_check.py compose: no
#      hostname, container name or fixed host port, an anonymous volume on state.dir, ...);
#   2. the Kubernetes manifests in deploy/kubernetes are valid against the Kubernetes API's
#      JSON schemas, strictly (unknown fields refused), for the oldest and newest version that
#      kubernetes-validate bundles (tools/setup.sh installs it into build/deploy-venv; it works
#      offline), and hang together (tools/deploy_check.py kubernetes: probes on api.listen's
#      port, state.dir on the pod's PersistentVolumeClaim, termination grace, memory, ...);
#   3. deploy/rotor.yaml, the config the image ships, and the ConfigMap's rotor.yaml pass
#      rotor's config validator;
#   4. the checks can fail: a compose override with a fixed hostname, a manifest with a
#      misspelt field and a ConfigMap config with a bad value must each be refused.
# Needs build/debug/app/rotor (cmake --build --preset debug --target rotor).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

fail() {
  echo "compose_check.sh: $*" >&2
  exit 1
}

if ! command -v docker-compose >/dev/null 2>&1; then
  fail "docker-compose not found (tools/setup.sh installs it)"
fi
validator="${ROTOR_ROOT}/build/deploy-venv/bin/kubernetes-validate"
if [[ ! -x "${validator}" ]]; then
  fail "${validator} not installed (tools/setup.sh installs it)"
fi
rotor="${ROTOR_ROOT}/build/debug/app/rotor"
if [[ ! -x "${rotor}" ]]; then
  fail "${rotor} not built (cmake --build --preset debug --target rotor)"
fi
manifests=(configmap.yaml service.yaml statefulset.yaml poddisruptionbudget.yaml)
# The oldest and the newest Kubernetes version whose schemas kubernetes-validate 1.37 bundles.
kube_versions=(1.25.0 1.37.0)

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# Validates the manifests of directory $1 against every version's schemas; prints the
# validator's findings and returns 1 on any, warnings included (an unknown kind or apiVersion
# is only a warning to it: no schema to check against).
validate_manifests() {
  local dir="$1" version out rc
  for version in "${kube_versions[@]}"; do
    rc=0
    out="$("${validator}" --strict --quiet --kubernetes-version "${version}" \
      "${manifests[@]/#/${dir}/}" 2>&1)" || rc=$?
    if ((rc != 0)) || [[ -n "${out}" ]]; then
      echo "${out}" >&2
      return 1
    fi
  done
}

# `rotor inspect` loads the config first, then the bundle and the state directory. Here the
# bundle (/opt/rotor/..., only inside the image) is missing, so the command fails; what must
# not appear is a config error, which rotor prints as "rotor: <path>: config <field>: ..."
# ("config: ..." when the file cannot be read or is not YAML). The environment overrides are
# cleared so that the file alone is checked. Returns 1 with rotor's output on a config error
# or a crash.
check_rotor_config() {
  local file="$1" rc=0 stderr
  stderr="$(env -u ROTOR_KAFKA_BOOTSTRAP_SERVERS -u ROTOR_STATE_DIR \
    "${rotor}" inspect --config "${file}" --user probe 2>&1 >/dev/null)" || rc=$?
  if grep -qE ': config[ :]' <<<"${stderr}"; then
    echo "${file} is not a valid rotor config:" >&2
    echo "${stderr}" >&2
    return 1
  fi
  # Anything but a clean exit or rotor's own failure codes (1, 2) is a crash or sanitizer report.
  if ((rc > 2)); then
    echo "rotor inspect --config ${file} exited ${rc}:" >&2
    echo "${stderr}" >&2
    return 1
  fi
}

# 1. Compose.
docker-compose -f docker-compose.yml config -q
"${ROTOR_PY}" tools/deploy_check.py compose deploy/rotor.yaml docker-compose.yml ||
  fail "docker-compose.yml does not scale (above)"

# 2. Kubernetes.
validate_manifests deploy/kubernetes || fail "deploy/kubernetes: schema validation failed (above)"
"${ROTOR_PY}" tools/deploy_check.py kubernetes deploy/kubernetes deploy/rotor.yaml \
  --config-out "${tmp}/configmap-rotor.yaml" || fail "deploy/kubernetes: findings above"

# 3. rotor's own validator.
check_rotor_config deploy/rotor.yaml || fail "deploy/rotor.yaml (above)"
check_rotor_config "${tmp}/configmap-rotor.yaml" ||
  fail "deploy/kubernetes/configmap.yaml's rotor.yaml (above)"

# 4. The checks refuse what they are for. Each probe must fail, saying why.
expect_refusal() {  # expect_refusal WHAT PATTERN COMMAND...: COMMAND must fail, its output matching PATTERN.
  local what="$1" pattern="$2" out rc=0
  shift 2
  out="$("$@" 2>&1)" || rc=$?
  if ((rc == 0)) || ! grep -qE "${pattern}" <<<"${out}"; then
    echo "${out}" >&2
    fail "self-test: ${what} was not refused with /${pattern}/ (exit ${rc}; output above)"
  fi
}
printf 'services:\n  rotor:\n    hostname: rotor-1\n' >"${tmp}/hostname.yml"
expect_refusal "a compose rotor service with a fixed hostname" "sets hostname" \
  "${ROTOR_PY}" tools/deploy_check.py compose deploy/rotor.yaml docker-compose.yml \
  "${tmp}/hostname.yml"
printf 'services:\n  rotor:\n    volumes: ["rotor-state:/var/lib/rotor"]\nvolumes:\n  rotor-state:\n' \
  >"${tmp}/named.yml"
expect_refusal "a compose rotor service with a named state volume" "named volume rotor-state" \
  "${ROTOR_PY}" tools/deploy_check.py compose deploy/rotor.yaml docker-compose.yml \
  "${tmp}/named.yml"

cp -r deploy/kubernetes "${tmp}/typo"
sed -i 's/^\( *\)readinessProbe:/\1readinesProbe:/' "${tmp}/typo/statefulset.yaml"
expect_refusal "a StatefulSet with a misspelt field (readinesProbe)" "'readinesProbe' was unexpected" \
  validate_manifests "${tmp}/typo"

cp -r deploy/kubernetes "${tmp}/grace"
sed -i 's/terminationGracePeriodSeconds: [0-9]*/terminationGracePeriodSeconds: 5/' \
  "${tmp}/grace/statefulset.yaml"
expect_refusal "a termination grace shorter than the drain" "terminationGracePeriodSeconds 5" \
  "${ROTOR_PY}" tools/deploy_check.py kubernetes "${tmp}/grace" deploy/rotor.yaml \
  --config-out "${tmp}/grace.yaml"

sed 's/^\( *threads:\) .*/\1 0/' "${tmp}/configmap-rotor.yaml" >"${tmp}/bad-threads.yaml"
expect_refusal "a rotor config with api.threads 0" "config api.threads" \
  check_rotor_config "${tmp}/bad-threads.yaml"

echo "compose_check.sh: ok (docker-compose.yml valid and scalable; deploy/kubernetes valid" \
  "against Kubernetes ${kube_versions[*]} schemas and consistent; deploy/rotor.yaml and the" \
  "ConfigMap's rotor.yaml pass the config validator; 5 broken variants refused)"
