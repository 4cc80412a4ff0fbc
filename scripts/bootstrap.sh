#!/usr/bin/env bash
# Installs the Debian packages Voxwatch needs, or says exactly how to.
# Usage: scripts/bootstrap.sh PACKAGE...   (checks each by the command it provides)
set -euo pipefail

declare -A provides=(
  [python3-venv]="python3 -c 'import ensurepip, venv'"
  [clickhouse-server]="command -v clickhouse-server || test -x /usr/bin/clickhouse"
  [clickhouse-client]="command -v clickhouse-client"
  [espeak-ng]="command -v espeak-ng"
  [sox]="command -v sox"
  [chromium]="command -v chromium"
  [prometheus-alertmanager]="command -v prometheus-alertmanager"
  [prometheus]="command -v prometheus && command -v promtool"
)

missing=()
for pkg in "$@"; do
  check="${provides[$pkg]:-dpkg -s $pkg}"
  if ! bash -c "$check" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "bootstrap: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "bootstrap: missing system packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
