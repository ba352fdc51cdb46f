#!/usr/bin/env bash
# Static analysis of the contracts with slither (crytic-compile reads the forge build).
#
#   contracts/slither.sh [extra slither args...]     e.g. --json /tmp/slither.json
#
# Exits non-zero when slither reports a medium- or high-impact finding that is not in the
# triage database slither.db.json (each triaged finding is justified in docs/security.md;
# re-triage with `--triage-mode` after reviewing a new one).
#
# Runs `slither . --foundry-compile-all` with slither.config.json (test/ and node_modules/
# filtered out), with two things changed, through FOUNDRY_* variables only:
#  - The build goes to a scratch directory: crytic-compile runs `forge clean` first, which
#    would otherwise wipe contracts/out (the ABIs the Python bindings are generated from).
#  - @openzeppelin is remapped to an absolute path. With foundry.toml's relative
#    `../node_modules`, forge lists OpenZeppelin's transitive imports under their absolute
#    path as well, so solc compiles two copies of Ownable/Context/StorageSlot/TransientSlot;
#    slither then mixes up their AST ids ("Failed to resolved name for reference id ...",
#    "Missing inheritance Ownable2Step", "JobMarket does not implement functions ...") and
#    analyses a JobMarket without its own functions. docs/security.md has the triage.
# Needs slither-analyzer (pip install slither-analyzer) and node_modules (npm ci).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
node_modules="$(cd "$root/node_modules" && pwd -P)" # canonical: forge resolves symlinks
slither="${SLITHER:-$(command -v slither || echo "$root/.venv/bin/slither")}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/verimarket-slither.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

export PATH="$node_modules/.bin:$PATH"
export FOUNDRY_OUT="$scratch/out"
export FOUNDRY_CACHE_PATH="$scratch/cache"
export FOUNDRY_LIBS="[$node_modules]"
export FOUNDRY_REMAPPINGS="@openzeppelin/contracts/=$node_modules/@openzeppelin/contracts/"

cd "$here"
"$slither" . --config-file slither.config.json --triage-database slither.db.json --fail-medium "$@"
