#!/usr/bin/env bash
# Fetches the Apache Kafka broker jars (and the tools the integration tests drive) from Maven
# Central into a cache outside the repo, for tools/kafka/broker.sh. See docs/kafka.md.
#
#   tools/kafka/fetch.sh           fetch once; prints nothing when the cache is already complete
#   tools/kafka/fetch.sh --print   also print the cache directory (ROTOR_KAFKA_HOME) on stdout
#
# The cache is ${ROTOR_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/rotor/kafka-<version>}; its
# libs/ holds every runtime jar, and libs/.complete records the pom.xml it was made from, so
# changing the pinned version (or anything else in pom.xml) fetches again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="${here}/pom.xml"

print=0
for arg in "$@"; do
  case "${arg}" in
    --print) print=1 ;;
    -h | --help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    *)
      echo "fetch.sh: unknown argument '${arg}' (try --help)" >&2
      exit 2
      ;;
  esac
done

version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "${pom}")"
if [[ -z "${version}" ]]; then
  echo "fetch.sh: no <kafka.version> in ${pom}" >&2
  exit 1
fi
home="${ROTOR_KAFKA_HOME:-${XDG_CACHE_HOME:-${HOME}/.cache}/rotor/kafka-${version}}"
libs="${home}/libs"
marker="${libs}/.complete"
want="$(sha256sum "${pom}" | cut -d' ' -f1)"

if [[ -f "${marker}" && "$(cat "${marker}")" == "${want}" ]]; then
  ((print)) && echo "${home}"
  exit 0
fi

for tool in mvn java; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "fetch.sh: '${tool}' not found: run tools/setup.sh (it installs maven and openjdk-17)" >&2
    exit 1
  fi
done

echo "fetch.sh: fetching Kafka ${version} jars from Maven Central into ${libs}" >&2
mkdir -p "${home}"
# Copy into a fresh directory and swap it in whole, so an interrupted or concurrent fetch never
# leaves a half-filled libs/ that looks complete.
staging="$(mktemp -d "${home}/libs.staging.XXXXXX")"
log="${staging}.log"
trap 'rm -rf "${staging}" "${log}"' EXIT
if ! nice -n 19 mvn -B -q -f "${pom}" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="${staging}" >"${log}" 2>&1; then
  cat "${log}" >&2
  echo "fetch.sh: Maven could not resolve the Kafka ${version} jars (output above)" >&2
  exit 1
fi
for jar in "kafka_2.13-${version}.jar" "kafka-tools-${version}.jar" slf4j-reload4j-*.jar \
  reload4j-*.jar; do
  if ! compgen -G "${staging}/${jar}" >/dev/null; then
    echo "fetch.sh: Maven finished but ${jar} is missing from ${staging}" >&2
    exit 1
  fi
done
echo "${want}" >"${staging}/.complete"
rm -rf "${libs}.old"
if [[ -d "${libs}" ]]; then
  mv "${libs}" "${libs}.old"
fi
mv "${staging}" "${libs}"
rm -rf "${libs}.old"
echo "fetch.sh: $(find "${libs}" -name '*.jar' | wc -l) jars in ${libs}" >&2
((print)) && echo "${home}"
exit 0
