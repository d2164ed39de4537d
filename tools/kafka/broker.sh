#!/usr/bin/env bash
# Starts, stops and inspects real single-node Kafka brokers (KRaft) on loopback for tests.
#
#   tools/kafka/broker.sh start [--name N] [--replace] [--auto-create-topics]   prints bootstrap
#   tools/kafka/broker.sh stop [--name N] [--clean]
#   tools/kafka/broker.sh status [--name N]
#   tools/kafka/broker.sh bootstrap [--name N]
#   tools/kafka/broker.sh tool [--name N] CLASS ARGS...   ('{bootstrap}' in ARGS is replaced)
#
# Needs the jars from tools/kafka/fetch.sh. The work is in broker.py; docs/kafka.md explains.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
exec "${ROTOR_PY}" "${ROTOR_ROOT}/tools/kafka/broker.py" "$@"
