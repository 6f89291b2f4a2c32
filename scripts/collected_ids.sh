#!/usr/bin/env bash
# Print the test ids every nox session collects (pytest --collect-only -q), one suite after
# the other under a "== <session>" header, so that two branches can be diffed:
#   scripts/collected_ids.sh > before.txt; (other branch) scripts/collected_ids.sh > after.txt
# Runs in the workspace's environment (`uv run`), with every package and extra installed.
set -euo pipefail
cd "$(dirname "$0")/.."

collect() {
  local name=$1; shift
  echo "== $name"
  # a suite that fails to collect prints its errors instead of ids: they show in the diff
  uv run --no-sync pytest -p no:cacheprovider --collect-only -q "$@" 2>&1 \
    | grep -E '::|rror' | sort || true
}

for package in core store pipeline orchestrator; do
  dir="packages/market-data-$package/tests"
  collect "tests($package)" "$dir" "--ignore=$dir/contracts"
done
collect "wheel" packages/market-data-core/tests
for package in core store pipeline orchestrator; do
  collect "contracts($package)" "packages/market-data-$package/tests/contracts"
done
collect "integration" integration-tests/tests
collect "stress" packages/market-data-store/tests/backends/test_versions.py \
  integration-tests/tests/test_versions_pipeline.py
