# Sourced by scripts/setup.sh and scripts/test: `phase NAME CMD...` runs CMD and prints one line when it
# starts and one when it ends, with the seconds it took, so a long first run (the llama.cpp build takes
# minutes) never looks hung. `phase_skip NAME WHY` records a phase that had nothing to do.
phase() {
  local name=$1 start rc=0
  shift
  start=$(date +%s)
  printf '==> %s ...\n' "$name"
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    printf '==> %s: done in %ss\n' "$name" "$(( $(date +%s) - start ))"
  else
    printf '==> %s: FAILED (exit %s) after %ss\n' "$name" "$rc" "$(( $(date +%s) - start ))"
  fi
  return "$rc"
}
phase_skip() { printf '==> %s: skipped (%s)\n' "$1" "$2"; }
