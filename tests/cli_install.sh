#!/usr/bin/env bash
# The installed library as a Debian user links it: `cmake --install` of this build into a
# temporary prefix puts the headers, libevlm.so (SONAME with its version, exporting exactly the
# functions the public headers declare), libevlm.a, evlm.pc and the evlm command in place;
# tests/install_consumer.c, built with `pkg-config --cflags --libs evlm` (and once with
# `pkg-config --static` against libevlm.a), answers on the scene model from two threads at once
# and must get the sequential ids. Skips (77) in sanitizer and cross builds (EVLM_INSTALL_SKIP)
# and, after the install checks, when ../shared/models/scenes-vlm is absent.
set -u
if [ -n "${EVLM_INSTALL_SKIP:-}" ]; then echo "SKIP: $EVLM_INSTALL_SKIP"; exit 77; fi
B="${EVLM_BUILD_DIR:-$(dirname "$EVLM_BIN")}"
SRC="${EVLM_SRC:-$(cd "$(dirname "$0")/.." && pwd)}"
M="${EVLM_SHARED:-}/models/scenes-vlm"
IMG="${EVLM_SHARED:-}/datasets/scenes-dev/car_030.png"
CC="${CC:-cc}"
for tool in cmake pkg-config nm readelf "$CC"; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
P="$tmp/usr"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
done_() { echo "cli_install: $pass passed, $fail failed"; [ $fail -eq 0 ] || exit 1; exit "${1:-0}"; }

cmake --install "$B" --prefix "$P" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; bad "cmake --install"; done_; }
L=$(dirname "$(find "$P" -name libevlm.a | head -1)")
for f in include/evlm.h include/evlm_compress.h include/evlm_npu.h bin/evlm; do [ -e "$P/$f" ] || bad "$f not installed"; done
for f in libevlm.a libevlm.so pkgconfig/evlm.pc; do [ -e "$L/$f" ] || bad "$f not installed in $L"; done
[ $fail -eq 0 ] && ok || done_

# the SONAME carries the ABI version, and the development link name points at it
soname=$(readelf -d "$L/libevlm.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case "$soname" in libevlm.so.[0-9]*) [ -e "$L/$soname" ] && ok || bad "$soname missing";; *) bad "SONAME '$soname'";; esac

# exported: the functions the public headers declare, nothing else (no internals, no data)
sed -n 's/^EVLM_API[^(]*[ *]\([a-z_0-9]*\)(.*/\1/p' "$P/include/evlm.h" "$P/include/evlm_compress.h" \
  "$P/include/evlm_npu.h" "$P/include/evlm_train.h" |
  sort > "$tmp/declared"
nm -D --defined-only "$L/libevlm.so" | awk '$3 != "" {print $3}' | grep -v '^_' | sort > "$tmp/exported"
if [ -s "$tmp/declared" ] && diff "$tmp/declared" "$tmp/exported" > "$tmp/sym.diff"; then ok
else bad "exports differ from the headers (< declared only, > exported only):"; cat "$tmp/sym.diff"; fi
nm -D --defined-only "$L/libevlm.so" | awk '$2 != "T" && $3 !~ /^_/ {print}' > "$tmp/data"
[ ! -s "$tmp/data" ] && ok || { bad "exported non-functions:"; cat "$tmp/data"; }

# the installed command runs
"$P/bin/evlm" --help | grep -q "usage: evlm" && ok || bad "installed evlm --help"

# a consumer, compiled as a user would (strict C11: the public headers must be clean)
export PKG_CONFIG_PATH="$L/pkgconfig"
CFLAGS="-std=c11 -Wall -Wextra -Wpedantic -Werror -O2"
# shellcheck disable=SC2046
$CC $CFLAGS "$SRC/tests/install_consumer.c" -o "$tmp/consumer" $(pkg-config --cflags --libs evlm) -pthread \
  && ok || bad "consumer does not build against the shared library"
LD_LIBRARY_PATH="$L" ldd "$tmp/consumer" 2>/dev/null | grep -q "libevlm.so.* => $L/" && ok ||
  bad "consumer does not load $L/libevlm.so"
# static: libevlm.a and what pkg-config --static adds (-l:libevlm.a: the .so sits beside it)
libs=$(pkg-config --static --libs evlm) || bad "pkg-config --static"
# shellcheck disable=SC2086
$CC $CFLAGS "$SRC/tests/install_consumer.c" -o "$tmp/consumer_static" $(pkg-config --cflags evlm) \
  ${libs/-levlm/-l:libevlm.a} -pthread && ok || bad "consumer does not build against libevlm.a"
readelf -d "$tmp/consumer_static" 2>/dev/null | grep -q 'NEEDED.*libevlm' && bad "static consumer needs libevlm.so" || ok

if [ ! -f "$M/config.json" ]; then echo "SKIP (model part): $M not found"; done_ 77; fi
[ -f "$IMG" ] || IMG=""
# two threads decoding at once on one model: a wait bound turns a deadlock into a failure
run() { # what, command...
  local what=$1; shift
  if timeout 300 "$@" > "$tmp/out" 2>&1; then ok; else bad "$what:"; cat "$tmp/out"; fi
}
run "shared library, two threads" env LD_LIBRARY_PATH="$L" "$tmp/consumer" "$M" $IMG
run "static library, two threads" "$tmp/consumer_static" "$M" $IMG
done_
