#!/usr/bin/env bash
# Long crash loop: ROUNDS SIGKILLs (default 200) under durable load with a consumer reading
# along, release build. Prints the seed first; replay a failure with CRASH_SEED=<seed>.
# Usage: tests/crash_long.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_ROUNDS="${1:-200}" cargo test --release -p integration-tests --test crash -- --nocapture
