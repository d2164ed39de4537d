#!/usr/bin/env bash
# The main job, end to end on this machine with no external services:
#   1. set up (tools/setup.sh: Debian packages, quiet when all are there) and build the
#      `rotor` daemon (release preset);
#   2. generate the synthetic news-feed events of configs/demo.json (deterministic, cached);
#   3. train the small default SIREN-RoPE model on them and export its bundle;
#   4. load the bundle back through the validating loader and print NE / AUC / ECE per label;
#   5. run `rotor serve` on the embedded Kafka (librdkafka's mock cluster, configs/embedded.yaml)
#      fed with the events, and print events/s and one user's cached state.
#
#   tools/demo.sh            train a fresh bundle (about 2-3 minutes on 2 cores)
#   tools/demo.sh --reuse    keep an existing data/default.bundle.safetensors
#   ROTOR_CONFIG=FILE tools/demo.sh    use another config (same shape as configs/demo.json)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${ROTOR_ROOT}"

reuse=0
for arg in "$@"; do
  case "${arg}" in
    --reuse) reuse=1 ;;
    -h | --help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    *)
      echo "demo.sh: unknown argument '${arg}' (try --help)" >&2
      exit 2
      ;;
  esac
done

config="${ROTOR_CONFIG:-configs/demo.json}"
tools/setup.sh

read -r events seed < <("${ROTOR_PY}" -c '
import json, sys
s = json.load(open(sys.argv[1]))["synth"]
print(s["events"], s["seed"])' "${config}")
mkdir -p data
events_file="data/synth-${events}-seed${seed}.jsonl"
bundle="data/default.bundle.safetensors"

if [[ ! -s "${events_file}" ]]; then
  echo "== generating ${events} synthetic events (seed ${seed}) -> ${events_file}"
  "${ROTOR_PY}" -m sirenrope.synth --config "${config}" --out "${events_file}.tmp"
  mv "${events_file}.tmp" "${events_file}"
else
  echo "== reusing ${events_file}"
fi

if ((reuse)) && [[ -s "${bundle}" ]]; then
  echo "== reusing ${bundle} (drop --reuse to retrain)"
else
  echo "== training the default model (${config}) -> ${bundle}"
  "${ROTOR_PY}" -m sirenrope.train --config "${config}" --data "${events_file}" --out "${bundle}"
fi

echo "== evaluating ${bundle} as loaded from disk"
"${ROTOR_PY}" -m sirenrope.evaluate --bundle "${bundle}" --data "${events_file}"

echo "== building the rotor daemon (release)"
cmake --preset release >/dev/null
cmake --build --preset release --target rotor | grep -vE '^\[[0-9]+/[0-9]+\]' || true
rotor_bin=build/release/app/rotor
[[ -x "${rotor_bin}" ]] || { echo "demo.sh: ${rotor_bin} was not built" >&2; exit 1; }

# A fresh state directory: the embedded cluster starts empty each run, so offsets kept from a
# previous demo would point past its end.
rm -rf data/demo-state
first_user="$("${ROTOR_PY}" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["user_id"])' "${events_file}")"
echo "== rotor serve on the embedded Kafka cluster, fed with ${events_file}"
"${rotor_bin}" serve --config configs/embedded.yaml --feed "${events_file}" \
  --exit-when-idle-ms 3000 --show-user "${first_user}"
