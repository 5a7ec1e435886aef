#!/usr/bin/env bash
# Installs the Debian packages rung needs to build, test and run (with --test, also the browser
# the page's test drives; with --bench, the benchmarks' outside references; with --fuzz,
# clang's fuzzing runtime). Idempotent: when every
# package is already present it only checks (dpkg-query) and exits, without apt-get.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev
  libabsl-dev librocksdb-dev prometheus-cpp-dev libcli11-dev libyaml-cpp-dev libeigen3-dev
  libgtest-dev libgmock-dev
  # the web page (server/web): civetweb serves it, OpenSSL's TLS, zlib for clients without gzip
  libcivetweb-dev libssl-dev zlib1g-dev
  # clang checks the lock annotations and clang-format the layout (both in scripts/test.sh)
  clang clang-format
  python3 curl procps openssl util-linux
  # the Python client (client/python): Debian's interpreter with gRPC, and venv + pip to install it
  python3-grpcio python3-protobuf python3-venv
  # the metrics test scrapes rungd and a worker with a real Prometheus server
  prometheus
  # the ablation example (config/examples/ablation_train.py) trains with scikit-learn
  python3-sklearn
  # the distributed example (config/examples/ddp_train.py): PyTorch's DDP with gloo on CPU
  python3-torch
)

# The web page's packages come from npm (web/package-lock.json); Node.js and npm from Debian
# unless some other Node.js is already there.
if ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi
# --test: also the browser that the web page's test drives (tests/web).
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium fonts-dejavu-core)
fi
# --bench: also what the benchmarks compare against (Debian's Optuna, for /usr/bin/python3).
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-optuna)
fi
# --fuzz: clang's libFuzzer runtime, for scripts/fuzz.sh (clang itself is always installed).
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(libclang-rt-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
