#!/usr/bin/env bash
# Creates benches/peers/.venv (its own venv, from PyPI only) and installs the peer engines at
# pinned versions, one at a time, so that one failing or timing out does not stop the others.
#
#   benches/peers/setup.sh            # all peers
#   PEER_INSTALL_TIMEOUT=1200 benches/peers/setup.sh duckdb bytewax
#
# Writes benches/peers/.venv/installed (one line per peer: "name version" or "name FAILED ...")
# which scripts/bench.sh reads to pick the peers that can run. PyFlink (apache-flink) is large
# (the Flink jars ship inside the wheel, ~300 MB with its dependencies) and needs a JDK 11+ on
# PATH (java 17 here).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
venv=$here/.venv
python=${PYTHON:-python3}
timeout_s=${PEER_INSTALL_TIMEOUT:-1500}

declare -A pins=(
    [duckdb]="duckdb==2.0.1"
    [bytewax]="bytewax==0.21.1"
    [flink]="apache-flink==2.3.0"
)
peers=("$@")
[[ ${#peers[@]} -gt 0 ]] || peers=(duckdb bytewax flink)

if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv" || { echo "setup: cannot create venv with $python" >&2; exit 1; }
    "$venv/bin/pip" install --quiet --upgrade pip setuptools wheel
fi
touch "$venv/installed"

for peer in "${peers[@]}"; do
    spec=${pins[$peer]:-}
    [[ -n $spec ]] || { echo "setup: unknown peer $peer" >&2; continue; }
    sed -i "/^$peer /d" "$venv/installed"
    echo "setup: installing $spec (timeout ${timeout_s}s)" >&2
    t0=$(date +%s)
    if timeout "$timeout_s" "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2; then
        echo "$peer ${spec#*==} ($(( $(date +%s) - t0 ))s)" >> "$venv/installed"
        echo "setup: $spec installed in $(( $(date +%s) - t0 ))s" >&2
    else
        code=$?
        reason="exit $code"; [[ $code -eq 124 ]] && reason="timed out after ${timeout_s}s"
        echo "$peer FAILED $spec: $reason" >> "$venv/installed"
        echo "setup: $spec FAILED ($reason); continuing" >&2
    fi
done
echo "setup: summary ($venv/installed):" >&2
cat "$venv/installed" >&2
