#!/usr/bin/env bash
# The main job, end to end on this machine with no external services:
#   1. set up (tools/setup.sh: Debian packages, quiet when all are there) and build the
#      `rotor` daemon (release preset);
#   2. generate the synthetic news-feed events of configs/demo.json (deterministic, cached);
#   3. train the small default SIREN-RoPE model on them and export its bundle;
#   4. load the bundle back through the validating loader and print NE / AUC / ECE per label;
#   5. run `rotor serve` on the embedded Kafka (librdkafka's mock cluster, configs/embedded.yaml)
#      fed with the events, its HTTP API on 127.0.0.1:8470; once it is ready and has consumed
#      them, ask it over HTTP what it holds of one user (GET /v1/users/<id>), score two
#      candidates for that user (POST /v1/users/<id>/score), read the same user with
#      `rotor inspect --url`, then stop it with SIGTERM and check that it exits 0.
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
      sed -n '2,13p' "$0"
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
api="http://127.0.0.1:8470"  # api.listen of configs/embedded.yaml
serve_log="data/demo-serve.log"
total="$(wc -l <"${events_file}")"
# One user of the data (the first line's) and how many events it has there; two items of other
# users' events as the candidates to score for it.
read -r user user_events < <("${ROTOR_PY}" -c '
import json, sys
lines = open(sys.argv[1])
first = json.loads(next(lines))["user_id"]
n = 1 + sum(1 for line in lines if json.loads(line)["user_id"] == first)
print(first, n)' "${events_file}")

echo "== rotor serve on the embedded Kafka cluster, fed with ${events_file}, HTTP API on ${api}"
"${rotor_bin}" serve --config configs/embedded.yaml --feed "${events_file}" >"${serve_log}" 2>&1 &
serve_pid=$!
# Whatever happens below, the daemon does not outlive the demo.
trap 'kill -TERM "${serve_pid}" 2>/dev/null || true' EXIT
alive() {
  kill -0 "${serve_pid}" 2>/dev/null || {
    echo "demo.sh: rotor serve exited early; its log (${serve_log}):" >&2
    tail -n 20 "${serve_log}" >&2
    exit 1
  }
}

# /readyz answers 503 (with its reason) until every partition is restored and consuming.
for ((i = 0; ; i++)); do
  alive
  code="$(curl -s -o /dev/null -w '%{http_code}' "${api}/readyz" || true)"
  [[ "${code}" == 200 ]] && break
  ((i < 600)) || { echo "demo.sh: ${api}/readyz still says ${code} after 60 s" >&2; exit 1; }
  sleep 0.1
done
echo "   ready: $(curl -s "${api}/readyz")"

# The feed runs inside serve: wait until every event has been consumed
# (rotor_input_records_total on /metrics), then for the user's last event to be committed (its
# next_pos reaching its event count; at most 10 s more, in case some were duplicates).
start="$(date +%s.%N)"
for ((i = 0; ; i++)); do
  alive
  consumed="$(curl -s "${api}/metrics" | awk '$1 == "rotor_input_records_total" {print $2}')"
  [[ "${consumed:-0}" -ge "${total}" ]] && break
  ((i < 6000)) || { echo "demo.sh: ${consumed:-0} of ${total} events after 10 min" >&2; exit 1; }
  sleep 0.1
done
"${ROTOR_PY}" -c 'import sys, time; n, t0 = int(sys.argv[1]), float(sys.argv[2]); dt = time.time() - t0
print(f"   {n} events consumed in {dt:.1f} s since ready ({n / dt:.0f} events/s, feed included)")' \
  "${total}" "${start}"
for ((i = 0; i < 100; i++)); do
  next_pos="$(curl -s "${api}/v1/users/${user}" | "${ROTOR_PY}" -c '
import json, sys
try:
    print(json.load(sys.stdin).get("next_pos", 0))
except ValueError:
    print(0)')"
  ((next_pos >= user_events)) && break
  sleep 0.1
done

echo "== what rotor holds of user ${user}: GET ${api}/v1/users/${user}"
curl -s "${api}/v1/users/${user}" | "${ROTOR_PY}" -m json.tool

echo "== scoring two candidates for ${user}: POST ${api}/v1/users/${user}/score"
body="$("${ROTOR_PY}" -c '
import json, sys, urllib.request
user, path, api = sys.argv[1:4]
state = json.load(urllib.request.urlopen(f"{api}/v1/users/{user}"))
candidates = []
for line in open(path):
    event = json.loads(line)
    if event["user_id"] != user:
        candidates.append({"item": event["item"], "attrs": event["attrs"]})
    if len(candidates) == 2:
        break
# Scored at one minute after the user'"'"'s last event.
print(json.dumps({"ts_ms": state["last_event_ts_ms"] + 60000, "candidates": candidates}))
' "${user}" "${events_file}" "${api}")"
echo "${body}" | "${ROTOR_PY}" -c '
import json, sys
for i, c in enumerate(json.load(sys.stdin)["candidates"]):
    print(f"   candidate {i}: item {c['"'"'item'"'"']['"'"'id'"'"']}, {c['"'"'attrs'"'"']}")'
curl -s -X POST -H 'Content-Type: application/json' --data "${body}" \
  "${api}/v1/users/${user}/score" | "${ROTOR_PY}" -m json.tool

echo "== rotor inspect --url ${api} --user ${user} (the same state, read while it serves)"
"${rotor_bin}" inspect --url "${api}" --user "${user}"

echo "== stopping rotor serve (SIGTERM)"
kill -TERM "${serve_pid}"
status=0
wait "${serve_pid}" || status=$?
trap - EXIT
grep -E '^rotor serve: ' "${serve_log}" | grep -v 'API listening' || true
if ((status != 0)); then
  echo "demo.sh: rotor serve exited with status ${status}; its log (${serve_log}):" >&2
  tail -n 20 "${serve_log}" >&2
  exit 1
fi
echo "== done: rotor serve stopped cleanly (exit 0); its log is ${serve_log}"
