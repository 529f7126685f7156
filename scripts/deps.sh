#!/usr/bin/env bash
# Installs the Debian 12 packages evlm builds with. As root it runs apt-get; otherwise it
# prints the command to run. Every package is here on purpose:
#   cmake, make, gcc, pkg-config   build
#   libcjson-dev                   config.json / tokenizer.json / chat templates
#   libpcre2-dev                   pre-tokenizer regexes with Unicode classes (\p{L}, \p{N})
#   libutf8proc-dev                NFC normalization, Unicode categories
#   libpng-dev libjpeg62-turbo-dev image decoding (vision models)
#   liblapacke-dev                 Cholesky factorizations of GPTQ (offline compression only)
#   clang libclang-rt-14-dev       libFuzzer harnesses (make fuzz)
#   clang-format                   the format check of make test (.clang-format)
#   python3                        test scripts compare JSON outputs
#   libprotobuf-c-dev protobuf-c-compiler libonnx-dev
#                                  the ONNX export (src/io/onnx.c, src/npu): protoc-c compiles
#                                  libonnx-dev's onnx.proto at build time; libprotobuf-c packs it
#   nodejs (npm where the nodejs package lacks it)
#                                  scripts/ort_run.mjs runs exported graphs in ONNX Runtime
#   gnuplot-nox                    make compression-report's docs/compression/pareto.png
# Then, as any user, npm's onnxruntime-node (ORT_NODE_VERSION, CPU only: its CUDA download is
# skipped) into build/npm (ignored by git), for tests/cli_onnx.sh; when npm cannot reach its
# registry this only warns, and that test is skipped.
# With --arm also (make test, .ci/run):
#   gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static and the :arm64 libraries
#                                  aarch64 cross build, tests under qemu-user (make test-arm);
#                                  the :arm64 ones through multiarch (dpkg --add-architecture);
#                                  the aarch64 build has no ONNX export (EVLM_ONNX=OFF: an
#                                  offline host step), so no :arm64 protobuf-c
# Usage: scripts/deps.sh [--quiet] [--arm]
set -euo pipefail
quiet=0
arm=0
for a in "$@"; do
  case "$a" in
    --quiet) quiet=1 ;;
    --arm) arm=1 ;;
    *) echo "deps: unknown option $a (--quiet, --arm)"; exit 1 ;;
  esac
done
pkgs=(cmake make gcc pkg-config libcjson-dev libpcre2-dev libutf8proc-dev libpng-dev
      libjpeg62-turbo-dev liblapacke-dev clang libclang-rt-14-dev clang-format python3
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev nodejs gnuplot-nox)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
ORT_NODE_VERSION=1.30.0
npm_dir="$(cd "$(dirname "$0")/.." && pwd)/build/npm"
# onnxruntime-node into build/npm unless that version is there
npm_ort() {
  local have
  have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
         "$npm_dir/node_modules/onnxruntime-node/package.json" 2>/dev/null | head -1 || true)
  [ "$have" = "$ORT_NODE_VERSION" ] && return 0
  [ $quiet -eq 1 ] || echo "deps: npm install onnxruntime-node@$ORT_NODE_VERSION into build/npm"
  mkdir -p "$npm_dir"
  if ! npm_config_onnxruntime_node_install_cuda=skip timeout 900 npm install --prefix "$npm_dir" \
       --no-audit --no-fund --no-package-lock --loglevel=error \
       "onnxruntime-node@$ORT_NODE_VERSION" >/dev/null; then
    echo "deps: warning: npm could not install onnxruntime-node (tests/cli_onnx.sh will skip)"
  fi
  return 0
}
[ $arm -eq 0 ] || pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
      libcjson-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 libpng-dev:arm64
      libjpeg62-turbo-dev:arm64 liblapacke-dev:arm64)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ $quiet -eq 1 ] || echo "deps: all packages present"
  npm_ort
  exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
# the :arm64 packages need arm64 as a foreign architecture of dpkg
addarch=""
if [[ " ${missing[*]}" == *":arm64"* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  addarch="dpkg --add-architecture arm64"
fi
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  [ -z "$addarch" ] || $addarch
  apt-get update -qq
  $cmd
  npm_ort
else
  echo "deps: missing packages; run as root:"
  [ -z "$addarch" ] || echo "  sudo $addarch"
  echo "  sudo apt-get update && sudo $cmd"
  exit 1
fi
