#!/usr/bin/env bash
# System services the test suite drives for real: Debian's chromium (browser test) and a local
# PostgreSQL (Dagster instance storage). Sourced by .ci/run; exports what the tests read.
# Idempotent: installs only what is missing, starts PostgreSQL only if it is down.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main >/dev/null
fi
# PostgreSQL outlives this script, and a daemon keeps every descriptor it inherits: started under
# `flock -s /tmp/ktt-cpu.lock .ci/run` it held the CPU lock (shared) as long as it ran, so every
# exclusive locker (benchmarks) waited for ever. Start it with nothing open beyond stdin/out/err.
without_inherited_fds() {
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec "$@"
    )
}
pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online \
    || without_inherited_fds pg_ctlcluster "$version" main start

as_postgres() { runuser -u postgres -- "$@"; }
as_postgres psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = 'ktt_test'" | grep -q 1 \
    || as_postgres psql -qc "CREATE ROLE ktt_test LOGIN CREATEDB PASSWORD 'ktt_test'"
as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname = 'ktt_dagster_test'" | grep -q 1 \
    || as_postgres createdb -O ktt_test ktt_dagster_test

# the test creates (and drops) a database of its own per run
export KTT_TEST_PG_URL="postgresql://ktt_test:ktt_test@127.0.0.1:5432/ktt_dagster_test"
export KTT_REQUIRE_BROWSER=1
export KTT_REQUIRE_POSTGRES=1
