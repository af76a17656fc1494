#!/usr/bin/env bash
# Run the fuzz targets of fuzz/ for a bounded time each (docs/fuzzing.md). Not run by CI.
#
# Usage: scripts/fuzz.sh [TARGET...]        every target, or only those named
#
#   FUZZ_SECONDS=60      how long each target runs
#   FUZZ_PARALLEL=1      how many targets run at once (each uses one core)
#   FUZZ_SANITIZER=address   or none (more executions per second, but memory errors in
#                        unsafe code of dependencies go unseen)
#   FUZZ_STACK_KB=256    the targets' stack: small, so stack use that grows with the input
#                        (recursion per frame or per nesting level) crashes instead of
#                        passing unseen; a server task has 2 MiB for everything
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET/) plus the corpus earlier
# runs grew (fuzz/corpus/TARGET/, not committed); a crash is saved under
# fuzz/artifacts/TARGET/ and makes this script exit 1. Logs go to fuzz/logs/TARGET.log.
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz passes.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
parallel=${FUZZ_PARALLEL:-1}
sanitizer=${FUZZ_SANITIZER:-address}
stack_kb=${FUZZ_STACK_KB:-256}
export RUSTC_BOOTSTRAP=1
target_dir=fuzz/target
triple=$(rustc -vV | sed -n 's/^host: //p')
fuzz=(cargo fuzz)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi

echo "== building ${#targets[@]} fuzz target(s) (sanitizer: $sanitizer)"
if [ $# -gt 0 ]; then
    for target in "${targets[@]}"; do
        "${fuzz[@]}" build -s "$sanitizer" --target-dir "$target_dir" "$target" || exit 2
    done
else
    "${fuzz[@]}" build -s "$sanitizer" --target-dir "$target_dir" || exit 2
fi

mkdir -p fuzz/logs
run_one() {
    local target=$1
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target" "fuzz/seeds/$target"
    # The binary itself rather than `cargo fuzz run`, so the small stack limit applies to
    # the fuzzer only (built above; the same as `cargo fuzz run` would run).
    (
        ulimit -s "$stack_kb"
        exec "$target_dir/$triple/release/$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
            -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="fuzz/artifacts/$target/"
    ) >"fuzz/logs/$target.log" 2>&1
    echo $? >"fuzz/logs/$target.status"
}

echo "== fuzzing each target for ${seconds}s, $parallel at a time"
for target in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do
        wait -n
    done
    echo "   $target"
    run_one "$target" &
done
wait

# One line per target, from libFuzzer's final statistics.
final_stat() { sed -n "s/^stat::$1: *//p" "fuzz/logs/$2.log" | tail -n 1; }
failed=0
printf '\n%-18s %8s %12s %10s %6s %7s %7s  %s\n' target seconds execs exec/s cov ft corpus result
for target in "${targets[@]}"; do
    status=$(cat "fuzz/logs/$target.status" 2>/dev/null || echo 1)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "fuzz/logs/$target.log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    if [ "$status" = 0 ]; then
        result=ok
    else
        result="CRASHED (exit $status): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
        failed=1
    fi
    printf '%-18s %8s %12s %10s %6s %7s %7s  %s\n' "$target" "$seconds" \
        "$(final_stat number_of_executed_units "$target")" "$(final_stat average_exec_per_sec "$target")" \
        "${cov:--}" "${ft:--}" "$corpus" "$result"
done
exit $failed
