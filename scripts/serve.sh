#!/usr/bin/env bash
# Sets up the machine, builds agentbox in release mode and starts the server.
# Extra arguments go to `agentbox serve` (see `agentbox serve --help`), for example:
#   ./scripts/serve.sh --listen 0.0.0.0:8080 --data-dir /var/lib/agentbox
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
cargo build --release -p api --bin agentbox
exec "${CARGO_TARGET_DIR:-target}/release/agentbox" serve "$@"
