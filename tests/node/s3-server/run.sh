#!/bin/bash
# Runs a test program that talks to the S3 test server (server.mjs), after making sure its npm
# dependency (s3rver, pinned in package-lock.json) is installed:
#   tests/node/s3-server/run.sh PROGRAM [ARGS...]
# `npm ci` runs only when node_modules is missing or older than the lock file; otherwise
# nothing touches the network.  A lock serialises the install when several tests start at once.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"

exec 9<"$here/package-lock.json"
flock 9
if [ ! -f "$here/node_modules/.package-lock.json" ] \
  || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "# npm ci in $here" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2)
fi
flock -u 9
exec 9<&-

exec "$@"
