// The environment of node `i` of a test cluster in this process: the shared Redis, PostgreSQL and archive folder, and
// its own id, media worker, RTC port range (1000 ports from rtcBase + i * 1000) and CDN folder.
import type { TempDir } from './media.ts';

export function clusterNodeEnv(i: number, shared: { redisUrl: string; databaseUrl: string; tmp: TempDir; rtcBase: number }): Record<string, string> {
  return {
    REDIS_URL: shared.redisUrl,
    DATABASE_URL: shared.databaseUrl,
    NODE_ID: `node-${i}`,
    MEDIASOUP_WORKERS: '1',
    RTC_MIN_PORT: String(shared.rtcBase + i * 1000),
    RTC_MAX_PORT: String(shared.rtcBase + i * 1000 + 999),
    CDN_DIR: shared.tmp.file(`cdn-${i}`),
    ARCHIVE_DIR: shared.tmp.file('archive'),
  };
}
