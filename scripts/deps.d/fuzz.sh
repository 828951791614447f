# shellcheck shell=bash
# Test dependency of the fuzzing step (scripts/fuzz.sh): cargo-fuzz, which drives libFuzzer
# through the libfuzzer-sys crate of fuzz/. It needs nightly flags, which the stable toolchain
# takes with RUSTC_BOOTSTRAP=1 (scripts/fuzz.sh sets it). Installed with cargo into
# ~/.cargo/bin, which a fresh CI machine does not have. Idempotent: an installed cargo-fuzz is
# left alone.

# Pinned: a newer cargo-fuzz may need a newer Rust than the machine's one toolchain.
if ! RUSTC_BOOTSTRAP=1 cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz 0.13.2'; then
    echo "deps.d/fuzz.sh: installing cargo-fuzz 0.13.2"
    cargo install cargo-fuzz --version 0.13.2 --locked --quiet \
        || { echo "deps.d/fuzz.sh: cargo install cargo-fuzz failed" >&2; return 1 2>/dev/null || exit 1; }
fi
