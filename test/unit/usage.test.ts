// UsageMeter (services/usage.ts) against PGlite in memory through the write-behind: what a tick records, idempotence
// within a minute, registration by broadcasts, and the real node-cron schedule (every second here) firing and
// stopping on close().
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import cron from 'node-cron';
import type { Db } from '../../services/db/db.ts';
import { BroadcastRepo, UsageRepo } from '../../services/db/broadcasts.ts';
import { DEFAULT_SQL_DIR, migrate, openPglite } from '../../services/db/index.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { WriteBehind } from '../../services/db/writeBehind.ts';
import { WRITE_EXECUTORS } from '../../services/db/writes.ts';
import { createLogger } from '../../services/logger.ts';
import { UsageMeter, minuteOf } from '../../services/usage.ts';

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
  let writes: WriteBehind;
  const meters: UsageMeter[] = [];
  const meter = (schedule?: string): UsageMeter => {
    const m = new UsageMeter({ writes, log: silentLog, ...(schedule ? { schedule } : {}) });
    meters.push(m);
    return m;
  };

  before(async () => {
    db = await openPglite(null);
    await migrate(db, DEFAULT_SQL_DIR, silentLog);
    writes = await WriteBehind.open({ db, log: silentLog, journalPath: null, executors: WRITE_EXECUTORS });
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
    writes?.close();
    await db?.close();
  });

  it('minuteOf() truncates to the UTC minute', () => {
    expect(minuteOf(new Date('2030-05-06T07:08:59.999Z')).toISOString()).to.equal('2030-05-06T07:08:00.000Z');
    expect(minuteOf(new Date('2030-05-06T07:08:00.000Z')).toISOString()).to.equal('2030-05-06T07:08:00.000Z');
  });

  it('tick() records one row per registered broadcast and per performer on it, truncated to the minute, once per minute', async () => {
    const m = meter();
    m.register({ stageId: 's1', broadcastId: 'b-s1', performerIds: () => ['ann', 'bob'] });
    m.register({ stageId: 's2', broadcastId: 'b-s2', performerIds: () => [] });
    const at = new Date('2030-01-01T12:34:56.789Z');
    const first = m.tick(at);
    expect(first.queued).to.equal(4);
    expect(await first.written).to.equal(true);
    const usage = new UsageRepo(db);
    const minute = new Date('2030-01-01T12:34:00.000Z');
    expect(await usage.list('b-s1')).to.deep.equal([
      { broadcastId: 'b-s1', stageId: 's1', performerId: null, minute },
      { broadcastId: 'b-s1', stageId: 's1', performerId: 'ann', minute },
      { broadcastId: 'b-s1', stageId: 's1', performerId: 'bob', minute },
    ]);
    expect(await usage.list('b-s2')).to.deep.equal([{ broadcastId: 'b-s2', stageId: 's2', performerId: null, minute }]);

    // Same minute again (a later second): nothing new, wherever in the minute it runs.
    await m.tick(new Date('2030-01-01T12:34:00.001Z')).written;
    await m.tick(new Date('2030-01-01T12:34:59.999Z')).written;
    expect(await usage.minutes({ stageId: 's1' })).to.deep.equal({ stageMinutes: 1, performerMinutes: 2 });
    // Next minute: new rows.
    await m.tick(new Date('2030-01-01T12:35:00.000Z')).written;
    expect(await usage.minutes({ stageId: 's1' })).to.deep.equal({ stageMinutes: 2, performerMinutes: 4 });
    expect(await usage.minutes({ stageId: 's2' })).to.deep.equal({ stageMinutes: 2, performerMinutes: 0 });
  });

  it('a broadcast is ticked only while registered; a duplicate performer id counts once', async () => {
    const m = meter();
    expect(m.tick(new Date('2030-02-01T00:00:00Z')).queued).to.equal(0);
    const reg = m.register({ stageId: 's3', broadcastId: 'b-s3', performerIds: () => ['cy', 'cy'] });
    expect(m.registered).to.equal(1);
    expect(m.tick(new Date('2030-02-01T00:00:30Z')).queued).to.equal(2);
    reg.close();
    reg.close();
    expect(m.registered).to.equal(0);
    expect(m.tick(new Date('2030-02-01T00:01:30Z')).queued).to.equal(0);
  });

  it('tick() throws when a broadcast cannot say who is on air; a row the database refuses is dropped, not retried', async () => {
    const m = meter();
    const reg = m.register({
      stageId: 's1',
      broadcastId: 'b-s1',
      performerIds: () => {
        throw new Error('registry broken');
      },
    });
    expect(() => m.tick()).to.throw(/registry broken/);
    reg.close();
    m.register({ stageId: 's1', broadcastId: 'no-such-broadcast', performerIds: () => [] });
    expect(await m.tick(new Date('2030-03-01T00:00:00Z')).written, 'a foreign-key violation is refused for good').to.equal(false);
    expect(writes.pending).to.equal(0);
  });

  it('rejects an invalid schedule', () => {
    expect(() => new UsageMeter({ writes, log: silentLog, schedule: 'not cron' })).to.throw(/invalid usage schedule/);
  });

  it('runs on its cron schedule (every second) and stops for good on close()', async () => {
    const tasksBefore = cronTasks();
    let calls = 0;
    const m = meter('* * * * * *');
    // A new performer on every call, so every run inserts rows (a same-minute tick would otherwise add nothing).
    m.register({
      stageId: 's3',
      broadcastId: 'b-s3',
      performerIds: () => {
        calls++;
        return [`cron-${calls}`];
      },
    });
    m.start();
    m.start(); // idempotent: still one task
    expect(cronTasks()).to.equal(tasksBefore + 1);
    const before = await count(db, 'b-s3');

    await sleep(2_500);
    expect(calls).to.be.at.least(2);
    await writes.flush(2_000);
    const during = await count(db, 'b-s3');
    expect(during - before).to.be.at.least(2);

    await m.close();
    await m.close(); // idempotent
    expect(cronTasks()).to.equal(tasksBefore);
    const callsAtClose = calls;
    await writes.flush(2_000);
    const atClose = await count(db, 'b-s3');
    await sleep(1_500);
    expect(calls).to.equal(callsAtClose);
    expect(await count(db, 'b-s3')).to.equal(atClose);

    expect(() => m.tick()).to.throw(/closed/);
    expect(() => m.start()).to.throw(/closed/);
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
      const writes = { async write() { inserts++; return true; } };
      const m = new UsageMeter({ writes, log: createLogger('error', { silent: true }), schedule: '* * * * * *' });
      m.register({ stageId: 's', broadcastId: 'b', performerIds: () => ['p'] });
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
