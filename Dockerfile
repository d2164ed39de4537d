# rotor's container image, self-contained from this repository (docs/deploy.md):
#
#   build    Debian's compilers and -dev packages; a release build of the `rotor` binary.
#   model    Debian's python3-torch; synthetic events and the default SIREN-RoPE bundle
#            (configs/demo.json, the same recipe as tools/demo.sh; about 3 minutes).
#   runtime  bookworm-slim with only the shared libraries rotor links, the binary, the bundle,
#            a small events file for `rotor produce`, deploy/rotor.yaml; runs as a non-root user.
#
#   docker build -t rotor .          (or: docker compose up --build)
#
# Not built on the machine it was written on (no Docker engine there); see docs/deploy.md.

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build

ARG DEBIAN_FRONTEND=noninteractive
# The C++ side of tools/setup.sh's list, for the `rotor` target only (no tests, benchmarks,
# fuzzers or lint). pkg-config: pipeline/ finds librdkafka through it. libboost-dev: api/'s
# Asio/Beast, header-only, so the runtime image needs no Boost library.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      librdkafka-dev librocksdb-dev libeigen3-dev libsimdjson-dev libhwy-dev \
      libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libboost-dev libcli11-dev \
      libjemalloc-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore keeps build/, data/ and .git out of the context.
COPY . .
RUN cmake --preset release -DROTOR_BUILD_TESTS=OFF -DROTOR_BUILD_BENCH=OFF \
 && cmake --build --preset release --target rotor \
 && strip build/release/app/rotor

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS model

ARG DEBIAN_FRONTEND=noninteractive
# libopenblas0-pthread: Debian's torch links the generic libblas.so.3; without OpenBLAS behind
# it training falls back to the reference BLAS, about 10x slower (see tools/setup.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-torch python3-numpy libopenblas0-pthread \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what training reads, so that editing docs or C++ does not retrain.
COPY python/sirenrope python/sirenrope
COPY configs/demo.json configs/demo.json
ENV PYTHONPATH=/src/python
RUN mkdir -p /out \
 && /usr/bin/python3 -m sirenrope.synth --config configs/demo.json --out /out/events.jsonl \
 && /usr/bin/python3 -m sirenrope.train --config configs/demo.json --data /out/events.jsonl \
      --out /out/default.bundle.safetensors \
 && head -n 100000 /out/events.jsonl > /out/demo-events.jsonl

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

ARG DEBIAN_FRONTEND=noninteractive
# The shared libraries of the release binary (their own dependencies, such as RocksDB's
# compression libraries, come with them); ca-certificates for brokers reached over SSL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 librocksdb7.8 libsimdjson14 libhwy1 libspdlog1.10 libfmt9 libyaml-cpp0.7 \
      libjemalloc2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and volume
# permissions are predictable. A fresh named volume mounted on /var/lib/rotor copies this
# directory's owner, so the state directory is writable by the daemon.
RUN groupadd --gid 10001 rotor \
 && useradd --uid 10001 --gid rotor --home-dir /var/lib/rotor --no-create-home \
      --shell /usr/sbin/nologin rotor \
 && install -d -o rotor -g rotor -m 0750 /var/lib/rotor

COPY --from=build /src/build/release/app/rotor /usr/local/bin/rotor
COPY --from=model /out/default.bundle.safetensors /opt/rotor/default.bundle.safetensors
COPY --from=model /out/demo-events.jsonl /opt/rotor/events.jsonl
COPY deploy/rotor.yaml /etc/rotor/rotor.yaml

# Smoke test of the image: `rotor inspect` parses and validates /etc/rotor/rotor.yaml, loads
# the bundle through the strict loader, then fails to open the (empty) state directory, exit
# code 1. Exit 2 would be a config or bundle error, 127 a missing shared library. The probe
# state directory is thrown away so that nothing lands in /var/lib/rotor.
RUN rc=0; ROTOR_STATE_DIR=/tmp/rotor-probe rotor inspect --config /etc/rotor/rotor.yaml \
      --user probe || rc=$?; \
    rm -rf /tmp/rotor-probe; \
    if [ "${rc}" -ne 1 ]; then echo "image smoke test failed: exit ${rc}" >&2; exit 1; fi

USER 10001:10001
VOLUME ["/var/lib/rotor"]
# The HTTP API (api.listen in deploy/rotor.yaml; docs/api.md).
EXPOSE 8470
ENTRYPOINT ["rotor"]
CMD ["serve", "--config", "/etc/rotor/rotor.yaml"]
