#!/usr/bin/env bash
# Checks the container deployment files without a Docker engine (docs/deploy.md):
#   1. docker-compose.yml parses and is a valid Compose file (`docker-compose config -q`,
#      Debian's docker-compose, which tools/setup.sh installs; it needs no engine for this);
#   2. deploy/rotor.yaml, the config the image ships, passes rotor's config validator.
# Needs build/debug/app/rotor (cmake --build --preset debug --target rotor).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "compose_check.sh: docker-compose not found (tools/setup.sh installs it)" >&2
  exit 1
fi
docker-compose -f docker-compose.yml config -q

rotor="${ROTOR_ROOT}/build/debug/app/rotor"
if [[ ! -x "${rotor}" ]]; then
  echo "compose_check.sh: ${rotor} not built (cmake --build --preset debug --target rotor)" >&2
  exit 1
fi
# `rotor inspect` loads the config first, then the bundle and the state directory. Here the
# bundle (/opt/rotor/..., only inside the image) is missing, so the command fails; what must
# not appear is a config error, which rotor prints as "rotor: <path>: config <field>: ..."
# ("config: ..." when the file cannot be read or is not YAML). The environment overrides are
# cleared so that the file alone is checked.
rc=0
stderr="$(env -u ROTOR_KAFKA_BOOTSTRAP_SERVERS -u ROTOR_STATE_DIR \
  "${rotor}" inspect --config deploy/rotor.yaml --user probe 2>&1 >/dev/null)" || rc=$?
if grep -qE ': config[ :]' <<<"${stderr}"; then
  echo "compose_check.sh: deploy/rotor.yaml is not a valid rotor config:" >&2
  echo "${stderr}" >&2
  exit 1
fi
# Anything but a clean exit or rotor's own failure codes (1, 2) is a crash or sanitizer report.
if ((rc > 2)); then
  echo "compose_check.sh: rotor inspect exited ${rc}:" >&2
  echo "${stderr}" >&2
  exit 1
fi
echo "compose_check.sh: ok (docker-compose.yml valid, deploy/rotor.yaml passes the config validator)"
