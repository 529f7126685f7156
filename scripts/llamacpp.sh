#!/usr/bin/env bash
# llamacpp.sh - builds llama.cpp, evlm's interop reference and peer, from the git bundle that the
# npm package node-llama-cpp ships (NODE_LLAMA_CPP_VERSION), into build/llamacpp (ignored by git).
#
#   scripts/llamacpp.sh          build once; later runs reuse the binaries (prints the bin folder)
#   scripts/llamacpp.sh --print  print the bin folder if the build is complete, else fail
#
# LLAMACPP_BIN=DIR uses the binaries already in DIR instead (another checkout's build): both
# forms then print DIR if it holds every target, else fail.
#
# Targets: llama-mtmd-cli llama-completion llama-quantize llama-perplexity (about 15 minutes on
# 2 cores). Nothing is downloaded at run time by evlm itself: this script is for `make interop`
# and the benchmarks only, and needs the npm registry once.
set -euo pipefail
NODE_LLAMA_CPP_VERSION=3.21.1
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/build/llamacpp"
bin="$dir/build/bin"
targets=(llama-mtmd-cli llama-completion llama-quantize llama-perplexity)

if [ -n "${LLAMACPP_BIN:-}" ]; then
  for t in "${targets[@]}"; do
    [ -x "$LLAMACPP_BIN/$t" ] || { echo "llamacpp.sh: LLAMACPP_BIN=$LLAMACPP_BIN has no $t" >&2; exit 1; }
  done
  echo "$LLAMACPP_BIN"
  exit 0
fi

complete() {
  for t in "${targets[@]}"; do [ -x "$bin/$t" ] || return 1; done
  [ -f "$dir/.complete" ]
}

if [ "${1:-}" = "--print" ]; then
  complete && { echo "$bin"; exit 0; }
  echo "llamacpp.sh: llama.cpp is not built (run scripts/llamacpp.sh)" >&2
  exit 1
fi
if complete; then
  echo "$bin"
  exit 0
fi
for tool in git cmake npm c++; do
  command -v $tool >/dev/null 2>&1 || { echo "llamacpp.sh: '$tool' is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
mkdir -p "$dir"
if [ ! -f "$dir/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" ]; then
  echo "llamacpp.sh: npm install node-llama-cpp@$NODE_LLAMA_CPP_VERSION (for its llama.cpp bundle)" >&2
  mkdir -p "$dir/npm"
  # --ignore-scripts: only the bundle is wanted, not node-llama-cpp's own prebuilt binaries
  npm install --prefix "$dir/npm" --ignore-scripts --no-audit --no-fund \
    -E "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >&2
fi
if [ ! -f "$dir/src/CMakeLists.txt" ]; then
  rm -rf "$dir/src.tmp"
  git clone -q "$dir/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$dir/src.tmp"
  mv "$dir/src.tmp" "$dir/src"
fi
echo "llamacpp.sh: building llama.cpp $(git -C "$dir/src" describe --tags --always 2>/dev/null) (about 15 minutes on 2 cores)" >&2
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$dir/build" -j"$(nproc)" --target "${targets[@]}" >&2
touch "$dir/.complete"
echo "$bin"
