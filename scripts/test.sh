#!/usr/bin/env bash
# All tests of the workspace: the README's test command, and what CI runs.
# nextest runs unit, integration and property tests; doctests run with cargo test --doc;
# the no_std proof builds needle-core into a #![no_std] staticlib with its own panic handler;
# scripts/api-contract.sh checks the OpenAPI document and runs schemathesis against the sim
# (it pip-installs its pinned tools into a venv under target/ once).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== no_std proof: needle-core linked into a #![no_std] staticlib"
cargo build --manifest-path crates/needle-nostd-check/Cargo.toml --release
echo "== doctests"
cargo test --workspace --all-features --doc
echo "== Python jig kit: clients/python, examples/jig against the sim (scripts/python-kit.sh)"
bash scripts/python-kit.sh
echo "== tests (nextest)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  echo "cargo-nextest not installed; running cargo test" >&2
  cargo test --workspace --all-features --no-fail-fast
fi
echo "== API contract: openapi-spec-validator, schemathesis against the sim, the rig's truth"
bash scripts/api-contract.sh
