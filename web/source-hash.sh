#!/bin/sh
# Prints one hash over every input of the dashboard bundle (sources, lock file, build script).
# build.mjs records it in dist/SOURCE_HASH; check-stale.sh fails when they differ.
set -eu
cd "$(dirname "$0")"
find src index.html package.json package-lock.json build.mjs tsconfig.json source-hash.sh -type f \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
