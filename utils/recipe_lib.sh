#!/usr/bin/env bash
# Shell helpers shared by the recipes in egs/*/run.sh (source it after utils/parse_options.sh).
#   log MESSAGE             a timestamped line naming the recipe line that logged it
#   lane LOG_FILE CMD...    run CMD in the background (output in LOG_FILE) once fewer than $nj such
#                           jobs run; in the foreground when nj = 1
#   wait_lanes              wait for every lane job; exit 1 naming the logs if one failed

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "${BASH_SOURCE[1]}"):${BASH_LINENO[0]}) $*"; }

lane_pids=()
lane() {
  local log_file=$1; shift
  if [ "${nj:-1}" -gt 1 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$nj" ]; do sleep 1; done
    mkdir -p "$(dirname "$log_file")"
    log "  background: $* (log: $log_file)"
    ( "$@" ) > "$log_file" 2>&1 &
    lane_pids+=($!)
  else
    "$@"
  fi
}

wait_lanes() {
  local failed=0
  for pid in "${lane_pids[@]}"; do wait "$pid" || failed=1; done
  lane_pids=()
  [ "$failed" = 0 ] || { log "a background job failed: see the logs named above"; exit 1; }
}
