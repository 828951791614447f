#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS_PER_TARGET]: builds the cargo-fuzz targets of fuzz/ once, then runs
# each for SECONDS_PER_TARGET seconds (default 15), one after the other, from its committed seed
# corpus (fuzz/corpus/<target>/, never written to) and a scratch corpus (fuzz/corpus-work/,
# kept between runs, not committed). scripts/test.sh runs it after cargo test.
#
# Prints one line per target (executions, coverage, features, corpus size) and closes with
# "fuzz: N targets, N crashes"; the exit status is non-zero when any target crashed (a panic, a
# failed assertion, a timeout of one input over 10 s, or over 2 GiB of memory), and the line of
# that target names the input that did it (fuzz/artifacts/<target>/...). Every crash becomes a
# regression test in src/ once fixed.
#
# cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable compiler take them. The
# targets are built without a sanitizer (-s none): they are safe Rust over safe parsers, so a
# panic is what there is to find, and the build is much quicker. FUZZ_JOBS sets cargo's -j.
# Longer campaigns: scripts/fuzz.sh 300 (figures in BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-15}"
# FUZZ_RUNS=N: stop each target after N inputs instead (SECONDS stays the cap), from a fixed seed
# (FUZZ_SEED, default 1), so that a run is repeatable: the test command does this, so that CI
# runs the same inputs every time instead of whatever a timer allows.
limit=(-max_total_time="$seconds")
if [ -n "${FUZZ_RUNS:-}" ]; then
    limit+=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}")
fi
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing (scripts/deps.d/fuzz.sh installs it)" >&2
    exit 1
fi
# cargo fuzz build takes no --jobs; cargo reads the same setting from the environment.
[ -n "${FUZZ_JOBS:-}" ] && export CARGO_BUILD_JOBS="$FUZZ_JOBS"

echo "== fuzz: build"
start=$(date +%s)
(cd fuzz && cargo fuzz build -s none 2>&1 | grep -v '^ *Compiling ' || true)
built=$(( $(date +%s) - start ))
bin_dir="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
mapfile -t targets < <(cd fuzz && cargo fuzz list)
for t in "${targets[@]}"; do
    if [ ! -x "$bin_dir/$t" ]; then
        echo "fuzz.sh: the build left no $bin_dir/$t" >&2
        exit 1
    fi
done
echo "fuzz: built ${#targets[@]} targets in ${built} s"

crashes=0
mkdir -p fuzz/artifacts
for t in "${targets[@]}"; do
    work="fuzz/corpus-work/$t"
    mkdir -p "$work" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/last-run.log"
    rc=0
    "$bin_dir/$t" "$work" "fuzz/corpus/$t" \
        "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    # The last status line: "#123 DONE cov: 456 ft: 789 corp: 12/3Kb ...".
    status="$(grep -E '^#[0-9]+' "$log" | tail -n1)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")"
    corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")"
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz %-16s ok     %10s execs  cov %5s  ft %6s  corpus %s\n' \
            "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    else
        crashes=$((crashes + 1))
        input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
        printf 'fuzz %-16s CRASH  (exit %s) input: %s\n' "$t" "$rc" "${input:-see $log}"
        grep -E -m1 -A3 "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | sed 's/^/    /' || true
        echo "    reproduce: $bin_dir/$t ${input:-<input>}"
    fi
done
echo "fuzz: ${#targets[@]} targets, ${crashes} crashes (${FUZZ_RUNS:+${FUZZ_RUNS} inputs or }${seconds} s each, build ${built} s)"
[ "$crashes" -eq 0 ]
