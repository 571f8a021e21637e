#!/usr/bin/env bash
# Stages what deploy/Dockerfile's offline path (PREBUILT=1) copies: deploy/prebuilt/{dist,node_modules},
# built and installed here, with dev dependencies pruned. Needs no registry.
#   deploy/scripts/stage-prebuilt.sh [--no-build]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stage="$repo/deploy/prebuilt"
cd "$repo"

[[ -d node_modules ]] || { echo "node_modules/ is missing: run npm install (or npm ci) first" >&2; exit 1; }
if [[ "${1:-}" != "--no-build" ]]; then npm run --silent build; fi
[[ -f dist/cli/main.js ]] || { echo "dist/cli/main.js is missing: npm run build failed or was skipped" >&2; exit 1; }

rm -rf "$stage"
mkdir -p "$stage"
cp package.json package-lock.json "$stage/"
cp -R dist "$stage/dist"
rm -f "$stage"/dist/.tsbuildinfo*
cp -R node_modules "$stage/node_modules"
# Prune against the lockfile, offline: removes devDependencies, never fetches anything.
(cd "$stage" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "staged $(du -sh "$stage" | cut -f1) in ${stage#"$repo"/}"
