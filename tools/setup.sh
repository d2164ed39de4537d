#!/usr/bin/env bash
# Installs every Debian package rotor needs to build and test, and the one PyPI tool of the
# deployment check (kubernetes-validate, into build/deploy-venv). Idempotent: prints nothing
# when everything is already installed, one line for each thing it installs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  # Toolchain.
  g++ cmake ninja-build git ca-certificates
  # clang + its runtime libraries: libFuzzer targets (-fsanitize=fuzzer) need both.
  clang libclang-rt-14-dev
  # Lint.
  clang-format clang-tidy
  # C++ libraries.
  librdkafka-dev librocksdb-dev libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libsimdjson-dev libhwy-dev libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev
  libjemalloc-dev
  # The HTTP API (api/): Boost.Asio and Boost.Beast, header-only.
  libboost-dev
  # The command line of `rotor` (app/cli.cc): CLI11, header-only.
  libcli11-dev
  # The real Kafka broker for the integration tests (tools/kafka/, docs/kafka.md): Java to
  # run it, Maven to fetch its jars from Maven Central.
  openjdk-17-jre-headless maven
  # Python side (the project's interpreter is /usr/bin/python3, see tools/env.sh).
  python3-torch python3-numpy python3-pytest
  # Student t intervals and paired tests of the model study (python/sirenrope/stats.py).
  python3-scipy
  # The output-topic materializer (python/sirenrope/materialize.py) and its integration test.
  python3-confluent-kafka
  # Debian's torch links the generic libblas.so.3; without OpenBLAS providing it, that is the
  # reference BLAS and training runs about 10x slower.
  libopenblas0-pthread
  # HTTP load generator of the API benchmark (bench/api_load.py, docs/performance.md).
  wrk
  # Validates docker-compose.yml without an engine (tools/compose_check.sh, docs/deploy.md);
  # the check reads its output and the Kubernetes manifests with Debian's YAML module, and
  # validates the manifests with kubernetes-validate from a venv (below).
  docker-compose python3-yaml python3-venv
  # tools/demo.sh asks the daemon's HTTP API (docs/api.md) with it.
  curl
  # The real MovieLens ratings (R package dslabs) the model study reads through Rscript
  # (python/sirenrope/movielens.py, docs/results.md), and the pictures of the study and the
  # load benchmark.
  r-base-core r-cran-dslabs python3-matplotlib
)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "${pkg}" 2>/dev/null || true)"
  if [[ "${status}" != ii* ]]; then
    missing+=("${pkg}")
  fi
done

# apt's and pip's chatter goes to a log shown only on failure.
log="$(mktemp)"
trap 'rm -f "${log}"' EXIT

if ((${#missing[@]} > 0)); then
  sudo_cmd=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo_cmd=(sudo)
    else
      echo "setup.sh: missing packages (${missing[*]}) and not root, no sudo: install them" >&2
      exit 1
    fi
  fi

  echo "setup.sh: installing ${missing[*]}"
  # Includes debconf's stderr warnings.
  apt=("${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q)
  if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } \
    >"${log}" 2>&1; then
    cat "${log}" >&2
    echo "setup.sh: apt-get failed (output above)" >&2
    exit 1
  fi
fi

# kubernetes-validate, pinned in tools/deploy-requirements.txt, from PyPI into a venv of
# Debian's Python under build/ (Debian's Python is externally managed: nothing goes into the
# system). tools/compose_check.sh validates deploy/kubernetes with it; the schemas come in the
# package, so that needs no network. Made again only when the pins change (the venv keeps a
# copy of the file it was made from); wheels only, so nothing is compiled.
venv="${root}/build/deploy-venv"
requirements="${root}/tools/deploy-requirements.txt"
if ! cmp -s "${requirements}" "${venv}/deploy-requirements.txt" ||
  [[ ! -x "${venv}/bin/kubernetes-validate" ]]; then
  echo "setup.sh: installing kubernetes-validate into build/deploy-venv"
  rm -rf "${venv}"
  if ! { /usr/bin/python3 -m venv "${venv}" &&
    "${venv}/bin/pip" install --disable-pip-version-check --no-input --only-binary=:all: \
      -r "${requirements}"; } >"${log}" 2>&1; then
    cat "${log}" >&2
    rm -rf "${venv}"
    echo "setup.sh: installing kubernetes-validate failed (output above)" >&2
    exit 1
  fi
  cp "${requirements}" "${venv}/deploy-requirements.txt"
fi
