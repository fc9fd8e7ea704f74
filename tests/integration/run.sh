#!/bin/bash
# Runs one integration test file with node's built-in test runner, flat TAP for meson
# (tap-flat.mjs):
#   tests/integration/run.sh auth.test.mjs
# GENERIA_NODE must name the generia-node binary (meson sets it).  The npm dependencies
# (@grpc/grpc-js, @grpc/proto-loader, pinned in package-lock.json) are installed with `npm ci`
# when node_modules is missing or older than the lock file; otherwise nothing touches the
# network.  A lock serialises the install when several test files start at once.
set -eu

cd "$(dirname "$0")"

if [ $# -ne 1 ]; then
  echo "usage: $0 FILE.test.mjs" >&2
  exit 2
fi

exec 9<package-lock.json
flock 9
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "# npm ci in $(pwd)" >&2
  npm ci --no-audit --no-fund >&2
fi
flock -u 9
exec 9<&-

exec node --test --test-reporter=./tap-flat.mjs "$1"
