#!/usr/bin/env bash
# Long crash loops: ROUNDS SIGKILLs (default 200) under durable load with a consumer reading
# along, release build — the plain loop, then the one with small segments, retention and
# reused segments (both tests of tests/tests/crash.rs, one after the other). Each prints its
# seed first; replay a failure with CRASH_SEED=<seed>.
# Usage: tests/crash_long.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_ROUNDS="${1:-200}" cargo test --release -p integration-tests --test crash -- --nocapture --test-threads=1
