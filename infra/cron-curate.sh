#!/usr/bin/env bash
# Cron entry: rerun curation incrementally. The job reuses the per-input state kept beside the
# output (<parent>/.<name>.state/, local or s3://) for unchanged inputs, reads only new ones and
# recomputes matched/, counts, thresholds, entry_probs and curated/ over everything, then
# publishes the new output atomically (a rename locally; a new run prefix made current by the
# manifest on s3://). Overlapping runs are skipped (flock on this machine), and the job itself
# refuses to run twice on one output: an flock beside a local output, a lease object beside an
# s3:// one (which also guards against a run started from another machine).
#
#   # crontab -e
#   15 */6 * * *  /opt/worldclip/infra/cron-curate.sh /opt/worldclip/infra/curate.json >> /var/log/worldclip-cron.log 2>&1
#
# Environment: LOCAL=1 runs `python jobs/curate.py` on this machine instead of infra/submit.sh;
# LOG_DIR (default build/logs) keeps one log per run; extra arguments go to the job.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
config=${1:-$here/curate.json}
shift || true
LOG_DIR=${LOG_DIR:-$root/build/logs}
mkdir -p "$LOG_DIR"

exec 9>"$LOG_DIR/cron-curate.lock"
if ! flock -n 9; then
  echo "$(date -u +%FT%TZ) curate: the previous run is still going; skipping this one"
  exit 0
fi

log="$LOG_DIR/curate-$(date -u +%Y%m%dT%H%M%SZ).log"
if [ "${LOCAL:-0}" = 1 ]; then
  cmd=("${PYTHON:-$root/.venv/bin/python}" "$root/jobs/curate.py" --config "$config" "$@")
else
  cmd=("$here/submit.sh" --config "$config" "$@")
fi
echo "$(date -u +%FT%TZ) curate: ${cmd[*]} (log: $log)"
if "${cmd[@]}" >"$log" 2>&1; then
  echo "$(date -u +%FT%TZ) curate: ok"
  sed -n '/^curate done/,$p' "$log"
else
  rc=$?
  echo "$(date -u +%FT%TZ) curate: FAILED (exit $rc); last lines of $log:"
  tail -n 40 "$log"
  exit "$rc"
fi
