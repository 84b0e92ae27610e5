#!/usr/bin/env bash
# Nightly headsweep on one machine: sweep, compact, report.
#
#   deploy/cron/nightly.sh <config.yaml> <output folder> <report.html>
#
# crontab line (02:30 every night, output appended to a log):
#   30 2 * * * /opt/headsweep/deploy/cron/nightly.sh /opt/headsweep/configs/nightly.yaml /srv/headsweep/out /srv/headsweep/report.html >> /var/log/headsweep-nightly.log 2>&1
#
# - Relative arguments start at the folder cron (or you) ran the script from, as for any
#   command; the config's own relative paths start at the config's folder. The output
#   folder is passed to the sweep with --out, so the config needs no `output:`.
# - A run still going when the next one starts makes the new one stop at once (flock on
#   <output folder>.lock, a file beside the output folder, outside the checkout unless
#   the output is in it).
# - The sweep scores what the config's globs match tonight, new checkpoints included,
#   into the same folder; HEADSWEEP_SWEEP_ARGS adds flags (e.g. "--workers 8").
# - Exit codes: 0 all scored; 3 finished, some checkpoints failed (rows in
#   <output>/errors), tables compacted and report written all the same; 1 or 2 the sweep,
#   compaction or report failed, and last night's compaction and report are left as
#   they were.
set -euo pipefail

usage="usage: nightly.sh <config.yaml> <output folder> <report.html>"
config=${1:?$usage}
out=${2:?$usage}
report=${3:?$usage}

# Made absolute before leaving the caller's folder.
absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
config=$(absolute "$config")
out=$(absolute "$out")
out=${out%/}
report=$(absolute "$report")

# Run from the repository, so `npx headsweep` is this checkout's bin.
cd "$(dirname "$0")/../.."

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) headsweep nightly: $*" >&2; }

exec 9>"$out.lock"
if ! flock -n 9; then
  log "the previous run still holds $out.lock; skipping tonight"
  exit 0
fi

log "sweep $config -> $out"
status=0
# shellcheck disable=SC2086  # HEADSWEEP_SWEEP_ARGS is a list of flags
npx headsweep sweep "$config" --out "$out" ${HEADSWEEP_SWEEP_ARGS:-} || status=$?
case $status in
  0) ;;
  3) log "some checkpoints failed; their rows are in $out/errors" ;;
  *) log "sweep failed with exit code $status; compaction and report not updated"; exit "$status" ;;
esac

log "compact $out"
compact=0
npx headsweep compact "$out" || compact=$?
if [[ $compact -ne 0 && $compact -ne 3 ]]; then
  log "compaction failed with exit code $compact; report not updated"
  exit "$compact"
fi

log "report -> $report"
npx headsweep report "$out" --html "$report"

log "done (exit $status)"
exit "$status"
