// Broadcasts, broadcast performers and usage ticks (sql/002_broadcasts.sql, services/db/broadcasts.ts):
// the same checks on a real PostgreSQL server and on PGlite in memory.
import { expect } from 'chai';
import type { Db } from '../../services/db/db.ts';
import { DEFAULT_SQL_DIR, migrate, openPglite, openPostgres } from '../../services/db/index.ts';
import { BroadcastConflictError, BroadcastRepo, UsageRepo } from '../../services/db/broadcasts.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';
import { silentLog } from './contract.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** @param open returns a migrated Db, shared by all checks (each check uses its own stage ids). */
function broadcastChecks(open: () => Db): void {
  let db: Db;
  let stages: StageRepo;
  let broadcasts: BroadcastRepo;
  let usage: UsageRepo;
  let n = 0;
  /** A fresh stage id. */
  const newStage = async (): Promise<string> => {
    const id = `stage-${++n}`;
    await stages.create({ id, title: id, performerKeyHash: 'h' });
    return id;
  };

  before(() => {
    db = open();
    stages = new StageRepo(db);
    broadcasts = new BroadcastRepo(db);
    usage = new UsageRepo(db);
  });

  it('migrates the tables and indexes', async () => {
    const { rows } = await db.query<{ indexname: string }>(
      "select indexname from pg_indexes where tablename in ('broadcasts', 'broadcast_performers', 'usage_ticks') order by indexname",
    );
    expect(rows.map((r) => r.indexname)).to.include.members([
      'broadcasts_pkey',
      'broadcasts_stage_id_idx',
      'broadcasts_one_open_per_stage',
      'broadcast_performers_pkey',
      'usage_ticks_pkey',
    ]);
  });

  it('starts and ends a broadcast, with Date timestamps', async () => {
    const stage = await newStage();
    const before = Date.now();
    const b = await broadcasts.start({ id: 'b-start', stageId: stage });
    expect(b).to.include({ id: 'b-start', stageId: stage, endedAt: null, endReason: null });
    expect(b.startedAt).to.be.instanceOf(Date);
    expect(Math.abs(b.startedAt.getTime() - before)).to.be.lessThan(60_000);
    expect(await broadcasts.get('b-start')).to.deep.equal(b);
    expect(await broadcasts.openForStage(stage)).to.deep.equal(b);
    expect(await broadcasts.get('nope')).to.equal(null);

    await sleep(5);
    const ended = await broadcasts.end('b-start', 'stopped');
    expect(ended).to.include({ id: 'b-start', stageId: stage, endReason: 'stopped' });
    expect(ended!.startedAt.getTime()).to.equal(b.startedAt.getTime());
    expect(ended!.endedAt).to.be.instanceOf(Date);
    expect(ended!.endedAt!.getTime()).to.be.greaterThan(b.startedAt.getTime());
    expect(await broadcasts.get('b-start')).to.deep.equal(ended);
    expect(await broadcasts.openForStage(stage)).to.equal(null);

    // Only an open broadcast ends: a second end() changes nothing.
    expect(await broadcasts.end('b-start', 'again')).to.equal(null);
    expect(await broadcasts.get('b-start')).to.deep.equal(ended);
    expect(await broadcasts.end('nope', 'x')).to.equal(null);
  });

  it('enforces one open broadcast per stage, and lists a stage\'s broadcasts newest first', async () => {
    const stage = await newStage();
    const other = await newStage();
    await broadcasts.start({ id: 'b-one-1', stageId: stage });
    const err = await rejection(broadcasts.start({ id: 'b-one-2', stageId: stage }));
    expect(err).to.be.instanceOf(BroadcastConflictError);
    expect(err.message).to.match(/already has an open broadcast \(b-one-1\)/);
    expect((err as BroadcastConflictError).openBroadcastId).to.equal('b-one-1');
    expect(await broadcasts.get('b-one-2')).to.equal(null);

    // Another stage is independent; a taken id is refused clearly.
    await broadcasts.start({ id: 'b-one-other', stageId: other });
    const dup = await rejection(broadcasts.start({ id: 'b-one-1', stageId: (await newStage()) }));
    expect(dup).to.be.instanceOf(BroadcastConflictError);
    expect(dup.message).to.match(/broadcast id b-one-1 already exists/);

    // Unknown stage: foreign key.
    expect(String(await rejection(broadcasts.start({ id: 'b-one-x', stageId: 'no-such-stage' })))).to.match(/foreign key/);

    // After ending it, the stage can go on air again.
    await broadcasts.end('b-one-1', 'stopped');
    await sleep(5);
    await broadcasts.start({ id: 'b-one-3', stageId: stage });
    expect((await broadcasts.openForStage(stage))!.id).to.equal('b-one-3');
    expect((await broadcasts.listForStage(stage)).map((b) => b.id)).to.deep.equal(['b-one-3', 'b-one-1']);
    expect(await broadcasts.listForStage('no-such-stage')).to.deep.equal([]);

    // The database itself refuses a second open broadcast.
    expect(String(await rejection(db.query("insert into broadcasts (id, stage_id) values ('b-one-raw', $1)", [stage])))).to.match(
      /broadcasts_one_open_per_stage|duplicate key/,
    );
  });

  it('lets only one of several concurrent starts on a stage win', async () => {
    const stage = await newStage();
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => broadcasts.start({ id: `b-race-${i}`, stageId: stage })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).to.have.length(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).to.be.instanceOf(BroadcastConflictError);
    expect(await broadcasts.listForStage(stage)).to.have.length(1);
  });

  it('records performers on and off air', async () => {
    const stage = await newStage();
    await broadcasts.start({ id: 'b-perf', stageId: stage });
    const t0 = new Date(Date.now() - 60_000);
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-perf', performerId: 'p1', displayName: 'Ann', at: t0 })).to.equal(true);
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-perf', performerId: 'p2', displayName: 'Bob' })).to.equal(true);
    // A duplicate is ignored: first joined_at and name kept.
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-perf', performerId: 'p1', displayName: 'Ann 2' })).to.equal(false);

    let list = await broadcasts.listPerformers('b-perf');
    expect(list.map((p) => p.performerId)).to.deep.equal(['p1', 'p2']);
    expect(list[0]).to.deep.equal({ broadcastId: 'b-perf', performerId: 'p1', displayName: 'Ann', joinedAt: t0, leftAt: null });
    expect(list[1]!.joinedAt).to.be.instanceOf(Date);
    expect(list[1]!.leftAt).to.equal(null);

    const t1 = new Date(Date.now() - 30_000);
    expect(await broadcasts.performerOffAir('b-perf', 'p1', t1)).to.equal(true);
    expect(await broadcasts.performerOffAir('b-perf', 'p1')).to.equal(false);
    expect(await broadcasts.performerOffAir('b-perf', 'nobody')).to.equal(false);
    list = await broadcasts.listPerformers('b-perf');
    expect(list[0]!.leftAt).to.deep.equal(t1);
    expect(list[1]!.leftAt).to.equal(null);

    // Back on air: present again, first joined_at kept.
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-perf', performerId: 'p1', displayName: 'Ann' })).to.equal(true);
    list = await broadcasts.listPerformers('b-perf');
    expect(list[0]).to.deep.equal({ broadcastId: 'b-perf', performerId: 'p1', displayName: 'Ann', joinedAt: t0, leftAt: null });

    // Nothing is recorded on a broadcast that is not open.
    expect(await broadcasts.performerOnAir({ broadcastId: 'no-such', performerId: 'p1', displayName: 'X' })).to.equal(false);
    expect(await broadcasts.listPerformers('no-such')).to.deep.equal([]);
  });

  it('end() closes the performers still present at ended_at, keeping earlier departures', async () => {
    const stage = await newStage();
    await broadcasts.start({ id: 'b-endp', stageId: stage });
    await broadcasts.performerOnAir({ broadcastId: 'b-endp', performerId: 'p1', displayName: 'Ann' });
    await broadcasts.performerOnAir({ broadcastId: 'b-endp', performerId: 'p2', displayName: 'Bob' });
    await broadcasts.performerOnAir({ broadcastId: 'b-endp', performerId: 'p3', displayName: 'Cy' });
    const early = new Date(Date.now() - 1_000);
    await broadcasts.performerOffAir('b-endp', 'p2', early);
    // Another broadcast's performer is not touched.
    const otherStage = await newStage();
    await broadcasts.start({ id: 'b-endp-other', stageId: otherStage });
    await broadcasts.performerOnAir({ broadcastId: 'b-endp-other', performerId: 'p1', displayName: 'Ann' });

    const ended = await broadcasts.end('b-endp', 'stopped');
    const byId = new Map((await broadcasts.listPerformers('b-endp')).map((p) => [p.performerId, p]));
    expect(byId.get('p1')!.leftAt).to.deep.equal(ended!.endedAt);
    expect(byId.get('p3')!.leftAt).to.deep.equal(ended!.endedAt);
    expect(byId.get('p2')!.leftAt).to.deep.equal(early);
    expect((await broadcasts.listPerformers('b-endp-other'))[0]!.leftAt).to.equal(null);

    // Ended: no one goes on air any more.
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-endp', performerId: 'p4', displayName: 'Dee' })).to.equal(false);
    expect(await broadcasts.performerOnAir({ broadcastId: 'b-endp', performerId: 'p1', displayName: 'Ann' })).to.equal(false);
    expect((await broadcasts.listPerformers('b-endp')).map((p) => p.performerId)).to.deep.equal(['p1', 'p2', 'p3']);
  });

  it('works inside a transaction, and a refused start does not abort it', async () => {
    const stage = await newStage();
    await broadcasts.start({ id: 'b-tx-1', stageId: stage });
    const out = await db.transaction(async (tx) => {
      const repo = new BroadcastRepo(tx);
      const err = await rejection(repo.start({ id: 'b-tx-2', stageId: stage }));
      expect(err).to.be.instanceOf(BroadcastConflictError);
      await repo.end('b-tx-1', 'replaced');
      return repo.start({ id: 'b-tx-2', stageId: stage });
    });
    expect(out.id).to.equal('b-tx-2');
    expect((await broadcasts.get('b-tx-1'))!.endReason).to.equal('replaced');
    expect((await broadcasts.openForStage(stage))!.id).to.equal('b-tx-2');
  });

  it('ticks are idempotent and minutes() sums stage and performer minutes', async () => {
    const s1 = await newStage();
    const s2 = await newStage();
    await broadcasts.start({ id: 'b-tick-1', stageId: s1 });
    await broadcasts.start({ id: 'b-tick-2', stageId: s2 });
    const m0 = new Date('2030-01-01T10:00:00Z');
    const m1 = new Date('2030-01-01T10:01:00Z');
    const m2 = new Date('2030-01-01T10:02:00Z');

    expect(await usage.recordTicks([])).to.equal(0);
    const first = [
      { broadcastId: 'b-tick-1', stageId: s1, performerId: null, minute: m0 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p1', minute: m0 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p2', minute: m0 },
    ];
    expect(await usage.recordTicks(first)).to.equal(3);
    // Same minute again: nothing new.
    expect(await usage.recordTicks(first)).to.equal(0);
    // A mix of old and new.
    expect(
      await usage.recordTicks([
        ...first,
        { broadcastId: 'b-tick-1', stageId: s1, performerId: null, minute: m1 },
        { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p1', minute: m1 },
        { broadcastId: 'b-tick-2', stageId: s2, performerId: null, minute: m1 },
        { broadcastId: 'b-tick-2', stageId: s2, performerId: null, minute: m2 },
        { broadcastId: 'b-tick-2', stageId: s2, performerId: 'p9', minute: m2 },
      ]),
    ).to.equal(5);

    const list = await usage.list('b-tick-1');
    expect(list).to.deep.equal([
      { broadcastId: 'b-tick-1', stageId: s1, performerId: null, minute: m0 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p1', minute: m0 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p2', minute: m0 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: null, minute: m1 },
      { broadcastId: 'b-tick-1', stageId: s1, performerId: 'p1', minute: m1 },
    ]);
    const { rows } = await db.query<{ n: number }>("select count(*)::int as n from usage_ticks where broadcast_id = 'b-tick-1' and performer_id = ''");
    expect(rows[0]!.n).to.equal(2);

    expect(await usage.minutes({ stageId: s1 })).to.deep.equal({ stageMinutes: 2, performerMinutes: 3 });
    expect(await usage.minutes({ stageId: s2 })).to.deep.equal({ stageMinutes: 2, performerMinutes: 1 });
    // [from, to): from inclusive, to exclusive.
    expect(await usage.minutes({ stageId: s1, from: m1 })).to.deep.equal({ stageMinutes: 1, performerMinutes: 1 });
    expect(await usage.minutes({ stageId: s1, to: m1 })).to.deep.equal({ stageMinutes: 1, performerMinutes: 2 });
    expect(await usage.minutes({ from: m1, to: m2 })).to.deep.equal({ stageMinutes: 2, performerMinutes: 1 });
    expect(await usage.minutes({ stageId: 'no-such' })).to.deep.equal({ stageMinutes: 0, performerMinutes: 0 });
    const all = await usage.minutes();
    expect(all.stageMinutes).to.be.at.least(4);
    expect(all.performerMinutes).to.be.at.least(4);

    // A tick for an unknown broadcast is a foreign-key error (in a minute the stage has no tick for: see below).
    expect(String(await rejection(usage.recordTicks([{ broadcastId: 'no-such', stageId: s1, performerId: null, minute: new Date('2030-01-01T10:09:00Z') }])))).to.match(
      /foreign key/,
    );
  });

  it("a stage's on-air minute is counted once, whichever broadcast ticks it (a takeover: the broadcast that died and the one that continues it)", async () => {
    const stage = await newStage();
    const m0 = new Date('2030-02-01T10:00:00Z');
    const m1 = new Date('2030-02-01T10:01:00Z');
    await broadcasts.start({ id: 'b-died', stageId: stage });
    expect(await usage.recordTicks([{ broadcastId: 'b-died', stageId: stage, performerId: null, minute: m0 }, { broadcastId: 'b-died', stageId: stage, performerId: 'p1', minute: m0 }])).to.equal(2);
    await broadcasts.end('b-died', 'the node recording it stopped answering', 'aborted');
    await broadcasts.start({ id: 'b-continued', stageId: stage });
    expect(await usage.recordTicks([{ broadcastId: 'b-continued', stageId: stage, performerId: null, minute: m0 }]), 'the same minute again').to.equal(0);
    expect(await usage.recordTicks([{ broadcastId: 'b-continued', stageId: stage, performerId: null, minute: m1 }]), 'the next minute').to.equal(1);
    expect(await usage.minutes({ stageId: stage })).to.deep.equal({ stageMinutes: 2, performerMinutes: 1 });
  });

  it('records a large batch of ticks (several statements) and counts them', async () => {
    const stage = await newStage();
    await broadcasts.start({ id: 'b-bulk', stageId: stage });
    const base = Date.UTC(2031, 0, 1);
    const ticks = Array.from({ length: 12_000 }, (_, i) => ({
      broadcastId: 'b-bulk',
      stageId: stage,
      performerId: i % 2 === 0 ? null : `p${i % 7}`,
      minute: new Date(base + i * 60_000),
    }));
    expect(await usage.recordTicks(ticks)).to.equal(12_000);
    expect(await usage.recordTicks(ticks)).to.equal(0);
    expect(await usage.minutes({ stageId: stage })).to.deep.equal({ stageMinutes: 6_000, performerMinutes: 6_000 });
  });

  // Last: it ends every open broadcast in the shared database.
  it('closeAllOpen() ends every open broadcast and its present performers', async () => {
    const s1 = await newStage();
    const s2 = await newStage();
    await broadcasts.start({ id: 'b-crash-1', stageId: s1 });
    await broadcasts.start({ id: 'b-crash-2', stageId: s2 });
    await broadcasts.performerOnAir({ broadcastId: 'b-crash-1', performerId: 'p1', displayName: 'Ann' });
    await broadcasts.performerOnAir({ broadcastId: 'b-crash-2', performerId: 'p2', displayName: 'Bob' });
    const { rows } = await db.query<{ n: number }>('select count(*)::int as n from broadcasts where ended_at is null');
    const open = rows[0]!.n;
    expect(open).to.be.at.least(2);

    expect(await broadcasts.closeAllOpen('server restart')).to.equal(open);
    expect(await broadcasts.closeAllOpen('server restart')).to.equal(0);
    for (const id of ['b-crash-1', 'b-crash-2']) {
      const b = await broadcasts.get(id);
      expect(b!.endReason).to.equal('server restart');
      expect(b!.endedAt).to.be.instanceOf(Date);
      const performers = await broadcasts.listPerformers(id);
      expect(performers).to.have.length(1);
      expect(performers[0]!.leftAt).to.deep.equal(b!.endedAt);
    }
    // Already ended broadcasts keep their reason.
    expect((await broadcasts.get('b-start'))!.endReason).to.equal('stopped');
    expect(await broadcasts.openForStage(s1)).to.equal(null);
  });

  it('deleting a stage removes its broadcasts, performers and ticks', async () => {
    const stage = await newStage();
    await broadcasts.start({ id: 'b-del', stageId: stage });
    await broadcasts.performerOnAir({ broadcastId: 'b-del', performerId: 'p1', displayName: 'Ann' });
    await usage.recordTicks([{ broadcastId: 'b-del', stageId: stage, performerId: 'p1', minute: new Date('2030-01-01T00:00:00Z') }]);
    await db.query('delete from stages where id = $1', [stage]);
    expect(await broadcasts.get('b-del')).to.equal(null);
    expect(await broadcasts.listPerformers('b-del')).to.deep.equal([]);
    expect(await usage.list('b-del')).to.deep.equal([]);
  });
}

describe('db: broadcasts and usage ticks', function () {
  this.timeout(60_000);

  describe('on PGlite (in memory)', () => {
    let db: Db;
    before(async () => {
      db = await openPglite(null);
      await migrate(db, DEFAULT_SQL_DIR, silentLog);
    });
    after(async () => {
      await db?.close();
    });
    broadcastChecks(() => db);
  });

  describe('on PostgreSQL (real server)', () => {
    let server: PostgresServer | undefined;
    let db: Db | undefined;
    before(async () => {
      server = await startPostgres();
      db = await openPostgres(server.url);
      await migrate(db, DEFAULT_SQL_DIR, silentLog);
    });
    after(async () => {
      await db?.close();
      await server?.stop();
    });
    broadcastChecks(() => db!);
  });
});
