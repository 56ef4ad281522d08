#!/usr/bin/env bash
# Kaldi-style option parsing for recipes: source this after declaring defaults.
#
#   stage=0; nj=2
#   . utils/parse_options.sh
#
# then `run.sh --stage 3 --nj 4 --dry-run true` sets stage=3, nj=4, dry_run=true. Dashes in
# option names become underscores. Only variables that already exist can be set (a typo is an
# error, not a silently ignored option). `--help` prints the settable variables. Positional
# arguments after the options are left in "$@".

__ps_usage() {
  echo "Usage: $0 [--name value]..." >&2
  echo "Options (with current values):" >&2
  for __ps_v in ${__ps_vars:-}; do echo "  --${__ps_v//_/-} ${!__ps_v}" >&2; done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      __ps_usage; exit 0 ;;
    --*=*)
      __ps_name="${1%%=*}"; __ps_value="${1#*=}"; shift ;;
    --*)
      __ps_name="$1"
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      __ps_value="$2"; shift 2 ;;
    *)
      break ;;
  esac
  __ps_name="${__ps_name#--}"; __ps_name="${__ps_name//-/_}"
  if ! declare -p "$__ps_name" >/dev/null 2>&1; then
    echo "$0: unknown option --${__ps_name//_/-} (no variable '$__ps_name' is declared by the recipe)" >&2
    exit 1
  fi
  printf -v "$__ps_name" '%s' "$__ps_value"
  __ps_vars="${__ps_vars:-} $__ps_name"
done
unset __ps_name __ps_value
true
