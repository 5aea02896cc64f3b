#!/usr/bin/env bash
# End-to-end tests of `tokenfab serve`, driven by the official openai npm package (and
# @anthropic-ai/sdk).
#
#   tests/server/run.sh <path-to-tokenfab-binary> <shared-dir>
#
# Exit codes: 0 all tests passed; 1 a test failed (or setup failed); 77 skipped — the shared
# test models or Node.js are missing. ctest should be told `SKIP_RETURN_CODE 77`, e.g.
#   add_test(NAME server_e2e COMMAND ${CMAKE_SOURCE_DIR}/tests/server/run.sh
#            $<TARGET_FILE:tokenfab> ${CMAKE_SOURCE_DIR}/../shared)
#   set_tests_properties(server_e2e PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 240)
#
# The first run installs the pinned dependencies from package-lock.json into
# tests/server/node_modules (npm ci). All traffic goes to servers on 127.0.0.1 that the tests
# start themselves; the whole run takes about a minute on 2 cores (a few under ASan).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <path-to-tokenfab-binary> <shared-dir>" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$1"
shared="$2"

if [ ! -f "$shared/models/gguf/stories260K.gguf" ]; then
  echo "SKIP: ../shared not found"
  echo "($shared/models/gguf/stories260K.gguf is missing)"
  exit 77
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not installed"
  exit 77
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "SKIP: Node.js >= 20 needed, found $(node --version)"
  exit 77
fi
if [ ! -x "$bin" ]; then
  echo "FAIL: tokenfab binary not found or not executable: $bin" >&2
  exit 1
fi

bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
shared="$(cd "$shared" && pwd)"

cd "$here"
# Reinstall when any pinned package (openai, @anthropic-ai/sdk) is missing or at another version.
stale="$(node -e '
  const pins = require("./package.json").dependencies;
  const off = Object.keys(pins).filter((name) => {
    try { return require(`./node_modules/${name}/package.json`).version !== pins[name]; } catch { return true; }
  });
  console.log(off.join(" "));')"
if [ -n "$stale" ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1; then
    cat npm-ci.log >&2
    echo "FAIL: npm ci failed in $here" >&2
    exit 1
  fi
  rm -f npm-ci.log
fi

export TOKENFAB_BIN="$bin"
export TOKENFAB_SHARED="$shared"
# Every test has its own timeout; this bounds the whole run in case one hangs anyway.
exec timeout -k 10 480 node --test --test-concurrency=1 --test-timeout=90000 ./*.test.mjs
