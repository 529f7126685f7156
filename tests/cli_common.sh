# cli_common.sh - sourced by the cli_*.sh tests (not a test itself), after their skip checks:
# sets BIN (the evlm command), tmp (a folder removed on exit), the counters pass / fail and the
# helpers ok (count a pass), bad (count a failure, print why) and err (a command that must fail
# with exit 1 and exactly one line matching a pattern: the CLI's error contract).
BIN="$EVLM_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
err() { # pattern, command...
  local pat=$1; shift
  local e rc; e=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$e" | wc -l)" -eq 1 ] &&
     printf '%s' "$e" | grep -q -- "$pat"; then ok; else bad "rc=$rc '$e' (want $pat)"; fi
}
