#!/usr/bin/env bash
# The perf suite: measure this machine's own limits (fio O_DIRECT write, iperf3 loopback), run
# the standard workloads against the broker and NATS JetStream (and Iggy when IGGY_ADDR is
# set), and write perf/results/<date>-<commit>/summary.md with the ratios broker ÷ disk and
# broker ÷ peer. See perf/README.md.
#
# Side-by-side mode (`perf/run.sh --side-by-side` or SIDE_BY_SIDE=1): the same workloads
# against every available system back to back (broker, nats-server, and Iggy when IGGY_ADDR or
# IGGY_SERVER_BIN is set), server and harness pinned to separate CPUs, into
# perf/results/<date>-<commit>-side-by-side/summary.md with one comparison table (throughput,
# e2e p50/p99/p99.9, server CPU-s per GB, each ÷ the broker's).
#
# Environment:
#   PERF_DATA_DIR  where servers and fio write (the disk under test; not tmpfs). Default ./perf-data
#   WORKLOADS      workload names to run (default: the standard list below; side by side: its list)
#   DRIVERS        drivers to run (default: "broker nats", plus iggy when IGGY_ADDR or
#                  IGGY_SERVER_BIN is set)
#   DURATION, WARMUP   override every workload's measured seconds / warm-up seconds
#   SHARDS         broker shards (default 0 = one per CPU it may use)
#   SERVER_CPUS, CLIENT_CPUS   pin the server / the harness (taskset lists, e.g. 1 and 0);
#                  side by side they default to the last and the first CPU
#   LIMITS=0       skip the fio and iperf3 measurements
#   IGGY_ADDR      an Iggy server you run (IGGY_USERNAME / IGGY_PASSWORD); IGGY_PID its process
#                  id for its CPU figures and pinning (else the one `iggy-server` process, if
#                  exactly one runs)
#   IGGY_SERVER_BIN  an iggy-server binary the suite starts itself for each workload (fresh
#                  directory, loopback port, pinned to SERVER_CPUS, stopped after)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

side_by_side=${SIDE_BY_SIDE:-0}
for arg in "$@"; do
    case "$arg" in
        --side-by-side) side_by_side=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see perf/run.sh --help)" >&2
            exit 2
            ;;
    esac
done

log() { printf '\n==> %s\n' "$*" >&2; }

missing=()
if [ "${LIMITS:-1}" != 0 ]; then
    command -v fio >/dev/null 2>&1 || missing+=(fio)
    command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
fi
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true
# The broker splits the open-files limit between connections (up to 20,000 per shard) and
# partitions; under a low hard limit (20,000 here) that leaves ~3,500 partitions, too few for
# partitions-10000-idle. The suite opens a few dozen connections: cap them instead.
if [ -z "${BROKER_CONNECTIONS_PER_SHARD_MAX:-}" ] && [ "$(ulimit -Hn)" != unlimited ] &&
    (($(ulimit -Hn) < 1048576)); then
    log "open-files hard limit $(ulimit -Hn): spawned brokers get BROKER_CONNECTIONS_PER_SHARD_MAX=1000"
    export BROKER_CONNECTIONS_PER_SHARD_MAX=1000
fi

data_dir=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out="$root/perf/results/$(date +%F)-$commit"
[ "$side_by_side" = 1 ] && out="$out-side-by-side"
mkdir -p "$out"

features=()
drivers=${DRIVERS:-"broker nats"}
if { [ -n "${IGGY_ADDR:-}" ] || [ -n "${IGGY_SERVER_BIN:-}" ]; } && [ -z "${DRIVERS:-}" ]; then
    drivers="$drivers iggy"
fi
case " $drivers " in *" iggy "*) features=(--features iggy) ;; esac

# Pinning: side by side, server on the last CPU and harness on the first unless told.
server_cpus=${SERVER_CPUS:-}
client_cpus=${CLIENT_CPUS:-}
if [ "$side_by_side" = 1 ] && [ -z "$server_cpus$client_cpus" ]; then
    cpus=$(nproc)
    if ((cpus >= 2)); then
        server_cpus=$((cpus - 1))
        client_cpus=0
    else
        log "one CPU only: server and harness run unpinned"
    fi
fi
pin=()
[ -n "$server_cpus" ] && pin+=(--server-cpus "$server_cpus")
[ -n "$client_cpus" ] && pin+=(--client-cpus "$client_cpus")

log "build (release)"
cargo build --release -p broker -p bench-harness "${features[@]}"
harness="$root/target/release/bench-harness"

limits=()
if [ "${LIMITS:-1}" != 0 ]; then
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
    limits=(--fio "$out/fio.json" --iperf "$out/iperf3.json")
fi

standard="max-rate-1p-1kb max-rate-1p-1kb-written fixed-rate-16p-1kb partitions-100 partitions-1000 partitions-10000-idle producers-4-consumers-4 keyed-16p-1kb unkeyed-16p-1kb zipf-keys-16p-1kb json-orders-16p-1kb backlog-catch-up"
side_by_side_list="max-rate-1p-1kb fixed-rate-16p-1kb partitions-100 partitions-1000 partitions-10000-idle json-orders-16p-1kb"
if [ "$side_by_side" = 1 ]; then
    workloads=${WORKLOADS:-$side_by_side_list}
else
    workloads=${WORKLOADS:-$standard}
fi
overrides=()
[ -n "${DURATION:-}" ] && overrides+=(--duration "$DURATION")
[ -n "${WARMUP:-}" ] && overrides+=(--warmup "$WARMUP")

# Iggy: a server the user runs (IGGY_ADDR, its pid from IGGY_PID or the one iggy-server
# process), or one this script starts per workload from IGGY_SERVER_BIN.
iggy_pid=""
iggy_dir=""
iggy_started=""
iggy_start() {
    iggy_pid=""
    if [ -n "${IGGY_SERVER_BIN:-}" ] && [ -z "${IGGY_ADDR_GIVEN:-}" ]; then
        iggy_dir="$data_dir/iggy-$$-$RANDOM"
        mkdir -p "$iggy_dir"
        local port=$((20000 + RANDOM % 20000))
        local taskset=()
        [ -n "$server_cpus" ] && taskset=(taskset -c "$server_cpus")
        IGGY_SYSTEM_PATH="$iggy_dir" IGGY_TCP_ADDRESS="127.0.0.1:$port" IGGY_HTTP_ENABLED=false \
            IGGY_QUIC_ENABLED=false IGGY_WEBSOCKET_ENABLED=false \
            "${taskset[@]}" "$IGGY_SERVER_BIN" >"$iggy_dir.log" 2>&1 &
        iggy_started=$!
        iggy_pid=$iggy_started
        export IGGY_ADDR="127.0.0.1:$port"
        for _ in $(seq 1 300); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
            kill -0 "$iggy_started" 2>/dev/null || break
            sleep 0.1
        done
        log "iggy-server did not come up; log $iggy_dir.log"
        return 1
    fi
    if [ -n "${IGGY_PID:-}" ]; then
        iggy_pid=$IGGY_PID
    else
        local found
        found=$(pgrep -x iggy-server || true)
        if [ -n "$found" ] && [ "$(wc -l <<<"$found")" = 1 ]; then
            iggy_pid=$found
        else
            log "iggy: no IGGY_PID and not exactly one iggy-server process: its CPU figures will be n/a"
        fi
    fi
}
iggy_stop() {
    if [ -n "$iggy_started" ]; then
        kill "$iggy_started" 2>/dev/null || true
        wait "$iggy_started" 2>/dev/null || true
        iggy_started=""
        rm -rf "$iggy_dir"
    fi
}
trap iggy_stop EXIT
[ -n "${IGGY_ADDR:-}" ] && IGGY_ADDR_GIVEN=1

failures=()
for w in $workloads; do
    for d in $drivers; do
        log "$w on $d${server_cpus:+ (server on CPUs $server_cpus, harness on ${client_cpus:-any})}"
        spawn=(--spawn --spawn-dir "$data_dir" --shards "${SHARDS:-0}")
        run_pin=("${pin[@]}")
        if [ "$d" = iggy ]; then
            spawn=()
            if ! iggy_start; then
                failures+=("$w/$d")
                iggy_stop
                continue
            fi
            if [ -n "$iggy_pid" ]; then
                spawn=(--server-pid "$iggy_pid")
            else
                # An external server of unknown pid cannot be pinned; pin the harness only.
                run_pin=()
                [ -n "$client_cpus" ] && run_pin=(--client-cpus "$client_cpus")
            fi
        fi
        if ! "$harness" run "bench-harness/workloads/$w.toml" --driver "$d" "${spawn[@]}" \
            "${run_pin[@]}" "${overrides[@]}" --out "$out" --no-progress --check; then
            failures+=("$w/$d")
        fi
        [ "$d" = iggy ] && iggy_stop
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
"$harness" summary --results "$out" "${limits[@]}" >/dev/null
if ((${#failures[@]})); then
    printf '\nFailed runs: %s\n' "${failures[*]}" | tee -a "$out/summary.md" >&2
fi
echo "results: $out (open $out/summary.md and the .html reports)"
((${#failures[@]} == 0))
