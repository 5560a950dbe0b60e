// A real app (real mediasoup workers, real database) on an ephemeral port, for one test file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApp, type App, type ShutdownOptions } from '../../services/app.ts';
import { loadConfig } from '../../services/config.ts';
import { createLogger } from '../../services/logger.ts';

export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/** Starts the app; the local archive and spool go to a temp dir removed on close unless env says where. */
export async function startTestApp(env: Record<string, string> = {}): Promise<App> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-app-'));
  const config = loadConfig({
    ARCHIVE_DIR: path.join(tmp, 'archive'),
    ARCHIVE_SPOOL_DIR: path.join(tmp, 'spool'),
    JOURNAL_DIR: path.join(tmp, 'journal'),
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    PGLITE_DIR: 'memory',
    // One self-signed certificate for every test app on the machine, made by the first (not in the clone's data/).
    TLS_DIR: path.join(os.tmpdir(), 'stage-radio-test-tls'),
    RTC_LISTEN_IP: '127.0.0.1',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'error',
    ...env,
  });
  let app: App;
  try {
    app = await startApp(config, createLogger(config.logLevel));
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const close = app.close;
  return Object.assign(app, {
    close: async (opts?: ShutdownOptions) => {
      await close(opts);
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  });
}

export async function createStage(app: App, title = 'Test stage'): Promise<{ id: string; performerKey: string; performerUrl: string }> {
  const res = await fetch(`${app.url}/api/stages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title }),
  });
  if (res.status !== 201) throw new Error(`create stage failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; performerKey: string; performerUrl: string };
}

/** Puts a stage on air or takes it off air through the REST API (admin token); throws unless it answers 200. */
export async function transition(app: App, stageId: string, action: 'start' | 'stop'): Promise<void> {
  const res = await fetch(`${app.url}/api/stages/${stageId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: '{}',
  });
  if (res.status !== 200) throw new Error(`${action} ${stageId}: ${res.status} ${await res.text()}`);
}
