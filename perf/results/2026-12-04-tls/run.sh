#!/usr/bin/env bash
# TLS on and off side by side (issue 25): the same workloads against a spawned release broker,
# alternating plaintext and TLS runs, broker pinned to CPU 1 and the harness to CPU 0.
#
#   cargo build --release -p broker -p bench-harness
#   perf/results/2026-12-04-tls/run.sh            # writes plain/ and tls/ result files here
#   (BROKER=path picks another broker binary; OUT=dir writes plain/, tls/ and table.md there)
#
# Environment: WORKLOADS (default below), DURATION (s, default 20), WARMUP (s, default 5),
# ROUNDS (plain/TLS pairs per workload, default 2), PERF_DATA_DIR (the disk under test, not
# tmpfs; default ./perf-data), RUN_TAG (prefix of the round directories, so a later batch of
# rounds adds to the earlier ones instead of replacing them), OUT (result directory, default
# this one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out_dir=${OUT:-$here}
cd "$root"
harness=$root/target/release/bench-harness
broker=${BROKER:-$root/target/release/broker}
workloads=${WORKLOADS:-"max-rate-1p-1kb max-rate-1p-1kb-written fixed-rate-16p-1kb"}
duration=${DURATION:-20}
warmup=${WARMUP:-5}
rounds=${ROUNDS:-2}
data=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

# A CA and a server certificate for localhost / 127.0.0.1 (P-256), made fresh for the run.
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$certs/ca.key" -out "$certs/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$certs/server.key" -out "$certs/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
    >"$certs/ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/ext" -out "$certs/server.pem" 2>/dev/null

run() { # MODE WORKLOAD ROUND
    local mode=$1 w=$2 round=$3 out="$out_dir/$1/round-${RUN_TAG:-}$3"
    local args=(run "bench-harness/workloads/$w.toml" --spawn --server-bin "$broker"
        --spawn-dir "$data" --shards 1 --server-cpus 1 --client-cpus 0
        --duration "$duration" --warmup "$warmup" --no-progress --check --out "$out")
    mkdir -p "$out"
    echo "==> $w $mode round $round" >&2
    if [ "$mode" = tls ]; then
        BROKER_TLS_CERT=$certs/server.pem BROKER_TLS_KEY=$certs/server.key \
            "$harness" "${args[@]}" --tls-ca "$certs/ca.pem" >"$out/$w.txt"
    else
        "$harness" "${args[@]}" >"$out/$w.txt"
    fi
}

for w in $workloads; do
    for round in $(seq 1 "$rounds"); do
        run plain "$w" "$round"
        run tls "$w" "$round"
    done
done
python3 "$root/perf/ab_table.py" "$out_dir" plain tls >"$out_dir/table.md"
cat "$out_dir/table.md"
