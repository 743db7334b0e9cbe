#!/usr/bin/env bash
# Sets up the machine, then runs every check CI runs: formatting, clippy, the crate
# boundary check and the whole test suite. Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup"
./scripts/setup.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The store, the sandbox runner and the browser know nothing of HTTP: only `api` may
# depend on axum. `cargo tree -i` fails with "did not match any packages" when axum is not
# in the crate's graph at all, which is the answer we want; any other failure is an error.
step "boundary check: fsd, confine, runner and browser do not depend on axum"
for crate in fsd confine runner browser; do
    status=0
    out=$(cargo tree -p "$crate" -i axum --edges normal,build,dev 2>&1) || status=$?
    if [[ $status -eq 0 ]]; then
        if grep -q '^axum ' <<<"$out"; then
            printf '%s depends on axum:\n%s\n' "$crate" "$out" >&2
            exit 1
        fi
    elif ! grep -q 'did not match any packages' <<<"$out"; then
        printf 'cargo tree -p %s -i axum failed:\n%s\n' "$crate" "$out" >&2
        exit 1
    fi
done
echo "fsd, confine, runner and browser are free of axum" >&2

step "cargo nextest run --workspace"
profile=default
if [[ -n "${CI:-}" ]]; then
    profile=ci
fi
cargo nextest run --workspace --profile "$profile" "$@"
