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
# With --arm also (make test, .ci/run):
#   gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static and the :arm64 libraries
#                                  aarch64 cross build, tests under qemu-user (make test-arm);
#                                  the :arm64 ones through multiarch (dpkg --add-architecture)
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
      libjpeg62-turbo-dev liblapacke-dev clang libclang-rt-14-dev clang-format python3)
[ $arm -eq 0 ] || pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
      libcjson-dev:arm64 libpcre2-dev:arm64 libutf8proc-dev:arm64 libpng-dev:arm64
      libjpeg62-turbo-dev:arm64 liblapacke-dev:arm64)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ $quiet -eq 1 ] || echo "deps: all packages present"
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
else
  echo "deps: missing packages; run as root:"
  [ -z "$addarch" ] || echo "  sudo $addarch"
  echo "  sudo apt-get update && sudo $cmd"
  exit 1
fi
