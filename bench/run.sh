#!/usr/bin/env bash
# Builds the agentbox server and the benchmark in release mode, then runs the benchmark,
# which starts its own server on a free loopback port and prints one report.
#
#   bench/run.sh                  # data and baseline files under /var/tmp
#   bench/run.sh --dir /mnt/disk  # measure another disk
#   bench/run.sh --quick          # a fast check that everything works
#   bench/run.sh --help           # every option
#
# The filesystem benchmark instead: an `agentbox mount` (started and stopped by the
# benchmark), a plain ext4 directory, a JuiceFS mount and the FUSE floor (a memory-only
# FUSE filesystem with agentbox's mount settings), side by side. It needs fio and
# JuiceFS (scripts/setup.sh installs both) and root, to mount and to drop caches.
#
#   bench/run.sh fs               # everything under /var/tmp
#   bench/run.sh fs --quick       # a fast check that everything works
#   bench/run.sh fs --help        # every option
#
# The run benchmark: hello world through POST /v1/compute/run for bash, python and
# typescript next to the same sandbox started bare, and runs per second with 8 clients. It
# needs root (it starts sandboxes as the sandbox user) and what scripts/setup.sh installs.
#
#   bench/run.sh run              # 200 round trips per runtime
#   bench/run.sh run --quick      # a fast check that everything works
#
# The browser benchmark: session create through the API next to a cold launch of the same
# Chromium, screenshot time, and memory per idle session with ten open. Needs root (the
# browsers run as the sandbox user) and chromium-headless-shell (scripts/setup.sh).
#
#   bench/run.sh browser
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -p api -p bench
exec "${CARGO_TARGET_DIR:-$root/target}/release/agentbox-bench" "$@"
