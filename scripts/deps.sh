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
#   python3                        test scripts compare JSON outputs
set -euo pipefail
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
pkgs=(cmake make gcc pkg-config libcjson-dev libpcre2-dev libutf8proc-dev libpng-dev
      libjpeg62-turbo-dev liblapacke-dev clang libclang-rt-14-dev python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ $quiet -eq 1 ] || echo "deps: all packages present"
  exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  $cmd
else
  echo "deps: missing packages; run as root:"
  echo "  sudo apt-get update && sudo $cmd"
  exit 1
fi
