#!/bin/sh
# Fails when the committed bundle (web/dist) was not rebuilt after a change to web/ sources.
# Needs only sh and sha256sum (no node): CI runs it on every build.
set -eu
cd "$(dirname "$0")"
want=$(sh source-hash.sh)
have=$(cat dist/SOURCE_HASH 2>/dev/null || echo missing)
if [ "$want" != "$have" ]; then
    echo "web/dist is stale: sources hash $want, bundle built from $have." >&2
    echo "Rebuild it: (cd web && npm ci && npm run build) and commit web/dist." >&2
    exit 1
fi
echo "web/dist is up to date with web/ sources ($want)"
