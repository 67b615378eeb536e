#!/usr/bin/env bash
# The perf suite: measure this machine's own limits (fio O_DIRECT write, iperf3 loopback), run
# the standard workloads against the broker and NATS JetStream (and Iggy when IGGY_ADDR is
# set), and write perf/results/<date>-<commit>/summary.md with the ratios broker ÷ disk and
# broker ÷ peer. See perf/README.md.
#
# Environment:
#   PERF_DATA_DIR  where servers and fio write (the disk under test; not tmpfs). Default ./perf-data
#   WORKLOADS      workload names to run (default: the standard list below)
#   DRIVERS        drivers to run (default: "broker nats", plus iggy when IGGY_ADDR is set)
#   DURATION, WARMUP   override every workload's measured seconds / warm-up seconds
#   SHARDS         broker shards (default 0 = one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '\n==> %s\n' "$*" >&2; }

missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

data_dir=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out="$root/perf/results/$(date +%F)-$commit"
mkdir -p "$out"

features=()
drivers=${DRIVERS:-"broker nats"}
if [ -n "${IGGY_ADDR:-}" ] && [ -z "${DRIVERS:-}" ]; then
    drivers="$drivers iggy"
fi
case " $drivers " in *" iggy "*) features=(--features iggy) ;; esac

log "build (release)"
cargo build --release -p broker -p bench-harness "${features[@]}"
harness="$root/target/release/bench-harness"

log "fio: O_DIRECT sequential write, 1 MiB blocks, iodepth 8 ($data_dir)"
fio --name=seqwrite --directory="$data_dir" --rw=write --direct=1 --ioengine=io_uring --bs=1M \
    --iodepth=8 --size=4G --runtime=20 --time_based --group_reporting \
    --output-format=json >"$out/fio.json"
rm -f "$data_dir"/seqwrite.*

log "iperf3: loopback TCP"
iperf_port=$((20000 + RANDOM % 20000))
iperf3 -s -1 -B 127.0.0.1 -p "$iperf_port" >/dev/null 2>&1 &
iperf_pid=$!
sleep 1
iperf3 -c 127.0.0.1 -p "$iperf_port" -t 10 -J >"$out/iperf3.json" || true
wait "$iperf_pid" 2>/dev/null || true

workloads=${WORKLOADS:-"max-rate-1p-1kb max-rate-1p-1kb-written fixed-rate-16p-1kb partitions-100 producers-4-consumers-4 keyed-16p-1kb unkeyed-16p-1kb zipf-keys-16p-1kb backlog-catch-up"}
overrides=()
[ -n "${DURATION:-}" ] && overrides+=(--duration "$DURATION")
[ -n "${WARMUP:-}" ] && overrides+=(--warmup "$WARMUP")

failures=()
for w in $workloads; do
    for d in $drivers; do
        log "$w on $d"
        spawn=(--spawn --spawn-dir "$data_dir" --shards "${SHARDS:-0}")
        [ "$d" = iggy ] && spawn=()
        if ! "$harness" run "bench-harness/workloads/$w.toml" --driver "$d" "${spawn[@]}" \
            "${overrides[@]}" --out "$out" --no-progress --check; then
            failures+=("$w/$d")
        fi
    done
    results=()
    for d in $drivers; do
        [ -f "$out/$w-$d.json" ] && results+=("$out/$w-$d.json")
    done
    if ((${#results[@]} > 1)); then
        "$harness" compare "${results[@]}" --out "$out/$w-compare.html" >/dev/null
    fi
done

log "summary"
"$harness" summary --results "$out" --fio "$out/fio.json" --iperf "$out/iperf3.json" >/dev/null
if ((${#failures[@]})); then
    printf '\nFailed runs: %s\n' "${failures[*]}" | tee -a "$out/summary.md" >&2
fi
echo "results: $out (open $out/summary.md and the .html reports)"
((${#failures[@]} == 0))
