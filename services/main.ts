// `npm start`: the service with embedded defaults (PGlite, local cdn/ folder) unless the environment says otherwise.
import { startApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { handleShutdownSignals } from './lifecycle.ts';
import { createLogger } from './logger.ts';

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\nSee README.md, "Configuration".\n`);
    process.exit(2);
  }
  throw err;
}

const log = createLogger(config.logLevel);
const app = await startApp(config, log);

const banner = [
  '',
  `  stage-radio is running at ${app.url}`,
  `  admin token: ${config.adminToken}${config.adminTokenGenerated ? '   (generated for this run; set ADMIN_TOKEN to keep one)' : ''}`,
  `  make and run shows in the admin page: ${app.url}/admin#token=${config.adminToken}`,
  `  or create a stage with curl:  curl -s -X POST ${app.url}/api/stages -H 'Authorization: Bearer ${config.adminToken}' -H 'Content-Type: application/json' -d '{"title":"My show"}'`,
  `  then open its performerUrl in a browser. Health: ${app.url}/healthz`,
  ...(app.secureUrl && app.tls
    ? [
        `  HTTPS on the same port (performers on other computers need it for the microphone): ${app.secureUrl}`,
        `  certificate: ${app.tls.certFile}${app.tls.source === 'self-signed' ? ' (self-signed)' : ''}, SHA-256 ${app.tls.fingerprint256}`,
      ]
    : ['  HTTPS: off (TLS=off, or no certificate could be made: see the log)']),
  `  database: ${config.db.kind === 'postgres' ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite (${config.db.dataDir ?? 'in memory'})`}`,
  '',
].join('\n');
process.stdout.write(`${banner}\n`);

handleShutdownSignals({ app, log, graceSeconds: config.shutdown.graceSeconds });
