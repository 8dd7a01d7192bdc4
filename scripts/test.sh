#!/usr/bin/env bash
# Runs every test of Lattice: unit tests, the end-to-end suite against the real binary
# (including the matrix-js-sdk interop test, which installs its pinned npm packages), and a
# short, bounded fuzzing run of the request decoding.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing Node.js and npm from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

# synadm (Debian's 0.38), the admin CLI the admin API tests drive Lattice with.
if ! command -v synadm >/dev/null 2>&1; then
  echo "installing synadm from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq synadm >/dev/null
fi

# The OpenID provider (oidc-provider) that the single sign-on tests of sso/ and e2e/ sign in
# at, installed once here so that the two packages' tests, run in parallel, never install it
# at the same time.
if [ ! -f e2e/oidcprovider/node_modules/oidc-provider/package.json ]; then
  (cd e2e/oidcprovider && npm ci --no-audit --no-fund >/dev/null)
fi

# Chromium (Debian's), the browser of the OAuth 2.0 pages' test (e2e/oauth_browser_test.go).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# HAProxy (Debian's), the round-robin load balancer in front of the three processes of the
# cluster tests (e2e/cluster_test.go).
if ! command -v haproxy >/dev/null 2>&1; then
  echo "installing haproxy from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi

# A throw-away PostgreSQL cluster on a loopback port, so that every storage, roomserver and
# end-to-end test also runs against PostgreSQL.
source scripts/postgres.sh
start_test_postgres
trap stop_test_postgres EXIT

go vet ./...
go test -count=1 -timeout 30m ./...
# The end-to-end suite again, with every server on its own PostgreSQL database.
LATTICE_E2E_BACKEND=postgres go test -count=1 -timeout 20m ./e2e/

# Bounded fuzzing of the JSON request decoding of /createRoom and /send. The bound is a count
# of inputs, not a duration: Go's fuzzing coordinator can fail a time-bounded run with
# "context deadline exceeded" when the time runs out while a slow input is still being run or
# minimized on a loaded machine, which says nothing about the code.
go test -count=1 -run '^$' -fuzz '^FuzzCreateRoom$' -fuzztime 3000x ./clientapi
go test -count=1 -run '^$' -fuzz '^FuzzSend$' -fuzztime 5000x ./clientapi
