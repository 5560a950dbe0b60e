// UsageMeter (services/usage.ts) against PGlite in memory: what a tick records, idempotence within a minute,
// and the real node-cron schedule (every second here) firing and stopping on close().
import { Writable } from 'node:stream';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import cron from 'node-cron';
import winston from 'winston';
import type { Db } from '../../services/db/db.ts';
import { BroadcastRepo, UsageRepo } from '../../services/db/broadcasts.ts';
import { DEFAULT_SQL_DIR, migrate, openPglite } from '../../services/db/index.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { createLogger } from '../../services/logger.ts';
import { UsageMeter, minuteOf, type LiveSnapshot } from '../../services/usage.ts';

const silentLog = createLogger('error', { silent: true });
const cronTasks = (): number => cron.getTasks().size;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function count(db: Db, broadcastId?: string): Promise<number> {
  const { rows } = broadcastId
    ? await db.query<{ n: number }>('select count(*)::int as n from usage_ticks where broadcast_id = $1', [broadcastId])
    : await db.query<{ n: number }>('select count(*)::int as n from usage_ticks');
  return rows[0]!.n;
}


describe('usage meter', function () {
  this.timeout(30_000);
  let db: Db;
  const meters: UsageMeter[] = [];
  const meter = (snapshot: () => LiveSnapshot[], schedule?: string): UsageMeter => {
    const m = new UsageMeter({ db, log: silentLog, snapshot, ...(schedule ? { schedule } : {}) });
    meters.push(m);
    return m;
  };

  before(async () => {
    db = await openPglite(null);
    await migrate(db, DEFAULT_SQL_DIR, silentLog);
    const stages = new StageRepo(db);
    const broadcasts = new BroadcastRepo(db);
    for (const s of ['s1', 's2', 's3']) {
      await stages.create({ id: s, title: s, performerKeyHash: 'h' });
      await broadcasts.start({ id: `b-${s}`, stageId: s });
    }
  });
  afterEach(async () => {
    await Promise.all(meters.splice(0).map((m) => m.close()));
  });
  after(async () => {
    await db?.close();
  });

  it('minuteOf() truncates to the UTC minute', () => {
    expect(minuteOf(new Date('2030-05-06T07:08:59.999Z')).toISOString()).to.equal('2030-05-06T07:08:00.000Z');
    expect(minuteOf(new Date('2030-05-06T07:08:00.000Z')).toISOString()).to.equal('2030-05-06T07:08:00.000Z');
  });

  it('tick() records one row per live stage and per performer on it, truncated to the minute', async () => {
    const m = meter(() => [
      { stageId: 's1', broadcastId: 'b-s1', performerIds: ['ann', 'bob'] },
      { stageId: 's2', broadcastId: 'b-s2', performerIds: [] },
    ]);
    const at = new Date('2030-01-01T12:34:56.789Z');
    expect(await m.tick(at)).to.equal(4);
    const usage = new UsageRepo(db);
    const minute = new Date('2030-01-01T12:34:00.000Z');
    expect(await usage.list('b-s1')).to.deep.equal([
      { broadcastId: 'b-s1', stageId: 's1', performerId: null, minute },
      { broadcastId: 'b-s1', stageId: 's1', performerId: 'ann', minute },
      { broadcastId: 'b-s1', stageId: 's1', performerId: 'bob', minute },
    ]);
    expect(await usage.list('b-s2')).to.deep.equal([{ broadcastId: 'b-s2', stageId: 's2', performerId: null, minute }]);

    // Same minute again (a later second): nothing new.
    expect(await m.tick(new Date('2030-01-01T12:34:00.001Z'))).to.equal(0);
    expect(await m.tick(new Date('2030-01-01T12:34:59.999Z'))).to.equal(0);
    // Next minute: new rows.
    expect(await m.tick(new Date('2030-01-01T12:35:00.000Z'))).to.equal(4);
    expect(await usage.minutes({ stageId: 's1' })).to.deep.equal({ stageMinutes: 2, performerMinutes: 4 });
    expect(await usage.minutes({ stageId: 's2' })).to.deep.equal({ stageMinutes: 2, performerMinutes: 0 });
  });

  it('tick() with nothing live records nothing; a duplicate performer id counts once', async () => {
    let live: LiveSnapshot[] = [];
    const m = meter(() => live);
    expect(await m.tick(new Date('2030-02-01T00:00:00Z'))).to.equal(0);
    live = [{ stageId: 's3', broadcastId: 'b-s3', performerIds: ['cy', 'cy'] }];
    expect(await m.tick(new Date('2030-02-01T00:00:30Z'))).to.equal(2);
  });

  it('tick() logs and rethrows database and snapshot errors', async () => {
    const logged: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const info = JSON.parse(chunk.toString()) as { level: string; message: string; component?: string; err?: string };
        if (info.level === 'error') logged.push(`${info.component}: ${info.message}: ${info.err}`);
        cb();
      },
    });
    const log = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] });
    const bad = new UsageMeter({ db, log, snapshot: () => [{ stageId: 's1', broadcastId: 'no-such-broadcast', performerIds: [] }] });
    meters.push(bad);
    let err: unknown = null;
    await bad.tick().catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/foreign key/);

    const throwing = new UsageMeter({
      db,
      log,
      snapshot: () => {
        throw new Error('registry broken');
      },
    });
    meters.push(throwing);
    err = null;
    await throwing.tick().catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/registry broken/);
    await sleep(10); // the stream transport writes asynchronously
    expect(logged).to.have.length(2);
    expect(logged[0]).to.match(/^usage: recording usage ticks failed: .*foreign key/);
    expect(logged[1]).to.equal('usage: usage snapshot failed: registry broken');
  });

  it('rejects an invalid schedule', () => {
    expect(() => new UsageMeter({ db, log: silentLog, snapshot: () => [], schedule: 'not cron' })).to.throw(/invalid usage schedule/);
  });

  it('runs on its cron schedule (every second) and stops for good on close()', async () => {
    const tasksBefore = cronTasks();
    let calls = 0;
    // A new performer on every call, so every run inserts rows (a same-minute tick would otherwise add nothing).
    const m = meter(() => {
      calls++;
      return [{ stageId: 's3', broadcastId: 'b-s3', performerIds: [`cron-${calls}`] }];
    }, '* * * * * *');
    m.start();
    m.start(); // idempotent: still one task
    expect(cronTasks()).to.equal(tasksBefore + 1);
    const before = await count(db, 'b-s3');

    await sleep(2_500);
    expect(calls).to.be.at.least(2);
    const during = await count(db, 'b-s3');
    expect(during - before).to.be.at.least(2);

    await m.close();
    await m.close(); // idempotent
    expect(cronTasks()).to.equal(tasksBefore);
    const callsAtClose = calls;
    const atClose = await count(db, 'b-s3');
    await sleep(1_500);
    expect(calls).to.equal(callsAtClose);
    expect(await count(db, 'b-s3')).to.equal(atClose);

    let err: unknown = null;
    await m.tick().catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/closed/);
    expect(() => m.start()).to.throw(/closed/);
  });

  it('never overlaps a slow run: runs that fire meanwhile are skipped', async () => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A db whose insert hangs until released.
    const slowDb: Pick<Db, 'query'> = {
      async query<R extends object>(text: string, params?: readonly unknown[]) {
        running++;
        maxRunning = Math.max(maxRunning, running);
        try {
          await gate;
          return await db.query<R>(text, params);
        } finally {
          running--;
        }
      },
    };
    const m = new UsageMeter({
      db: slowDb,
      log: silentLog,
      snapshot: () => {
        calls++;
        return [{ stageId: 's3', broadcastId: 'b-s3', performerIds: [`slow-${calls}`] }];
      },
      schedule: '* * * * * *',
    });
    meters.push(m);
    m.start();
    await sleep(2_300);
    expect(calls).to.equal(1);
    expect(maxRunning).to.equal(1);
    // close() waits for the run in flight.
    let closed = false;
    const closing = m.close().then(() => (closed = true));
    await sleep(50);
    expect(closed).to.equal(false);
    release();
    await closing;
    expect(calls).to.equal(1);
  });
  it('leaves nothing behind after close(): a process that started a meter exits by itself', async () => {
    // A separate Node process: start a meter on a 1 s schedule (fake db), let it tick, close it, and return
    // from the script without process.exit(). It must end on its own, promptly.
    const usageModule = path.resolve(import.meta.dirname, '../../services/usage.ts');
    const loggerModule = path.resolve(import.meta.dirname, '../../services/logger.ts');
    const script = `
      const { UsageMeter } = await import(${JSON.stringify(usageModule)});
      const { createLogger } = await import(${JSON.stringify(loggerModule)});
      let inserts = 0;
      const db = { async query() { inserts++; return { rows: [{ one: 1 }], rowCount: 1 }; } };
      const m = new UsageMeter({ db, log: createLogger('error', { silent: true }),
        snapshot: () => [{ stageId: 's', broadcastId: 'b', performerIds: ['p'] }], schedule: '* * * * * *' });
      m.start();
      await new Promise((r) => setTimeout(r, 1500));
      await m.close();
      console.log('closed after ' + inserts + ' inserts');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const started = Date.now();
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running 8 s later');
      }, 8_000);
      child.on('exit', (c, sig) => {
        clearTimeout(timer);
        resolve(c ?? String(sig));
      });
    });
    expect(code, `child stderr: ${err}`).to.equal(0);
    expect(out).to.match(/closed after [1-9]\d* inserts/);
    // 1.5 s of ticking plus start-up; a leaked cron timer would keep it alive until the kill.
    expect(Date.now() - started).to.be.lessThan(7_000);
  });
});
