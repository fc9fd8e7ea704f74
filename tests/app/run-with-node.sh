#!/bin/sh
# run-with-node.sh NODE COMMAND [ARGS...]
#
# Starts a throwaway generia-node (its embedded PostgreSQL and Redis in a temporary data
# folder, the gateway and the CDN on free ports), waits until GET /ready answers 200, runs COMMAND with
# GENERIA_TEST_GATEWAY_URL set to the gateway, stops the node with SIGTERM and returns
# COMMAND's exit status. The node's log is printed (to stderr) when COMMAND fails.
set -u

node=$1
shift

work=$(mktemp -d "${TMPDIR:-/tmp}/generia-app-test.XXXXXX") || exit 1
# As root the embedded PostgreSQL runs as user postgres, which must be able to traverse this.
chmod 0755 "$work"
mkdir -m 0755 "$work/node"
node_pid=

cleanup() {
  if [ -n "$node_pid" ]; then
    kill -TERM "$node_pid" 2>/dev/null
    wait "$node_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
url="http://127.0.0.1:$port"
# The gateway serves the signed media URLs on its own port too.  The tests sign in far more
# often than a person: generous rate limits.
"$node" serve --data-dir "$work/node" --gateway-port "$port" \
  --set ratelimit.auth_burst=100000 --set ratelimit.auth_per_minute=6000000 \
  --set ratelimit.write_burst=100000 --set ratelimit.write_per_minute=6000000 \
  >"$work/node.log" 2>&1 &
node_pid=$!

ready=no
for _ in $(seq 600); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/ready")" = 200 ]; then
    ready=yes
    break
  fi
  if ! kill -0 "$node_pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

if [ "$ready" != yes ]; then
  echo "generia-node did not become ready at $url within 60 s; its log:" >&2
  cat "$work/node.log" >&2
  exit 1
fi

GENERIA_TEST_GATEWAY_URL=$url "$@"
status=$?
if [ "$status" != 0 ]; then
  echo "the test failed with status $status; the node's log:" >&2
  cat "$work/node.log" >&2
fi
exit "$status"
