# shellcheck shell=bash
# Test dependency of the fuzzing step (scripts/fuzz.sh): cargo-fuzz, which drives libFuzzer
# through the libfuzzer-sys crate of fuzz/. It needs nightly flags, which the stable toolchain
# takes with RUSTC_BOOTSTRAP=1 (scripts/fuzz.sh sets it). Installed with cargo into
# ~/.cargo/bin, which a fresh CI machine does not have. Idempotent: an installed cargo-fuzz is
# left alone.

if ! RUSTC_BOOTSTRAP=1 cargo fuzz --version >/dev/null 2>&1; then
    echo "deps.d/fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet \
        || { echo "deps.d/fuzz.sh: cargo install cargo-fuzz failed" >&2; return 1 2>/dev/null || exit 1; }
fi
