#!/usr/bin/env bash
# A long run of normal and hostile clients against one real pushhub (docs/benchmarks.md,
# "Soak"). Not run by CI.
#
# Usage: scripts/soak.sh [MINUTES] [pushhub-bench soak options...]
#
#   scripts/soak.sh            30 minutes with the default mix
#   scripts/soak.sh 5 --clients 1000 --unicast-rate 300
#
# It builds both binaries in release mode, starts its own server on free loopback ports
# (embedded default, raw TCP on), and runs for MINUTES: 400 resuming clients with random
# reconnects and a reconnect storm every 2 minutes, unicasts and broadcasts to them,
# slow consumers, hostile clients (continuation and ping floods, raw TCP floods, broken
# frames, slowloris, connect churn, SSE reconnect storms, bad pushes) and timer churn.
# It prints the server's RSS and CPU every minute and, at the end, lost and duplicated
# messages and timers; it exits 1 if any was lost or duplicated, a push failed or the
# server died. The server's log is in bench-logs/soak.log.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-30}
shift || true
cargo build --release -p pushhub -p pushhub-bench
exec target/release/pushhub-bench soak --pushhub-bin target/release/pushhub --minutes "$minutes" "$@"
