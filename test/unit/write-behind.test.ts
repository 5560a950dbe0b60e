// The write-behind buffer on a database that fails as a real one does: connection errors (retry) and SQL errors
// (drop). Memory only here (journalPath null); the journal, replay and crashes are in journal.test.ts.
import { expect } from 'chai';
import { isDbUnavailable, isTransientDbError, WriteBehind, type Executor } from '../../services/db/writeBehind.ts';
import { createLogger } from '../../services/logger.ts';

const log = createLogger('error', { silent: true });
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const uniqueViolation = () => Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' });

/** A database that is down until `up` is set, and records what it was asked, in order. */
function flakyDb() {
  const state = { up: false, written: [] as string[], calls: 0 };
  const db = {
    query: async (text: string) => {
      state.calls++;
      if (!state.up) throw refused();
      if (text === 'bad') throw uniqueViolation();
      state.written.push(text);
      return { rows: [], rowCount: 1 };
    },
  };
  return { state, db };
}

const executors = {
  put: (db, d: { text: string }) => db.query(d.text),
} satisfies Record<string, Executor>;

function open(db: ReturnType<typeof flakyDb>['db'], opts: { retryBaseMs?: number; retryMaxMs?: number; maxBuffered?: number } = {}) {
  return WriteBehind.open({ db, log, journalPath: null, executors, ...opts });
}

describe('WriteBehind', () => {
  it('classifies errors: connection failures are transient, statement errors are not', () => {
    expect(isTransientDbError(refused())).to.equal(true);
    expect(isTransientDbError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).to.equal(true);
    expect(isTransientDbError(uniqueViolation())).to.equal(false);
    expect(isDbUnavailable(refused())).to.equal(true);
    expect(isDbUnavailable(new Error('Connection terminated unexpectedly'))).to.equal(true);
    expect(isDbUnavailable(uniqueViolation())).to.equal(false);
    expect(isDbUnavailable(new TypeError('x is undefined'))).to.equal(false);
  });

  it('holds writes while the database is down and writes them in order once it is back', async () => {
    const { state, db } = flakyDb();
    const w = await open(db, { retryBaseMs: 10, retryMaxMs: 40 });
    const results = ['a', 'b', 'c'].map((text) => w.write('put', { text }));
    const deadline = Date.now() + 5000;
    while (state.calls < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(state.calls, 'retried meanwhile').to.be.greaterThan(2);
    expect(w.pending).to.equal(3);
    expect(w.outageSince).to.be.a('number');
    expect(w.counters.deferred).to.be.greaterThan(1);
    state.up = true;
    expect(await Promise.all(results)).to.deep.equal([true, true, true]);
    expect(state.written).to.deep.equal(['a', 'b', 'c']);
    expect(w.pending).to.equal(0);
    expect(w.outageSince).to.equal(null);
    expect(w.counters.written).to.equal(3);
    w.close();
  });

  it('drops a write the database refuses for its content, and goes on with the next', async () => {
    const { state, db } = flakyDb();
    state.up = true;
    const w = await open(db);
    expect(await w.write('put', { text: 'bad' })).to.equal(false);
    expect(await w.write('put', { text: 'good' })).to.equal(true);
    expect(state.written).to.deep.equal(['good']);
    expect(w.counters.failed).to.equal(1);
    w.close();
  });

  it('drops, and does not retry, a write whose executor throws a JavaScript error (bad data, not an outage)', async () => {
    const { state, db } = flakyDb();
    state.up = true;
    let calls = 0;
    const w = await WriteBehind.open({
      db,
      log,
      journalPath: null,
      retryBaseMs: 5,
      executors: {
        shape: async (_db, d: { list: string[] }) => {
          calls++;
          return d.list.length;
        },
        put: executors.put,
      },
    });
    expect(await w.write('shape', JSON.parse('{}') as { list: string[] })).to.equal(false);
    expect(await w.write('put', { text: 'next' })).to.equal(true);
    expect(calls).to.equal(1);
    expect(w.counters.failed).to.equal(1);
    expect(w.counters.deferred).to.equal(0);
    w.close();
  });

  it('refuses a kind with no executor at once', async () => {
    const { state, db } = flakyDb();
    state.up = true;
    const w = await open(db);
    expect(await (w as WriteBehind).write('nope', { text: 'x' })).to.equal(false);
    expect(w.counters.failed).to.equal(1);
    expect(state.calls).to.equal(0);
    w.close();
  });

  it('bounds memory: beyond maxBuffered the oldest write is dropped and counted', async () => {
    const { state, db } = flakyDb();
    const w = await open(db, { retryBaseMs: 1000, maxBuffered: 2 });
    const first = w.write('put', { text: '1' });
    void w.write('put', { text: '2' });
    void w.write('put', { text: '3' });
    expect(await first).to.equal(false);
    expect(w.counters.dropped).to.equal(1);
    state.up = true;
    expect(await w.flush(2000)).to.equal(true);
    expect(state.written).to.deep.equal(['2', '3']);
    w.close();
  });

  it('close() resolves what is still held as not written and stops retrying (no timer left)', async () => {
    const { state, db } = flakyDb();
    const w = await open(db, { retryBaseMs: 10 });
    const p = w.write('put', { text: 'x' });
    await new Promise((r) => setTimeout(r, 30));
    w.close();
    w.close();
    expect(await p).to.equal(false);
    const calls = state.calls;
    await new Promise((r) => setTimeout(r, 60));
    expect(state.calls).to.equal(calls);
    expect(await w.write('put', { text: 'y' })).to.equal(false);
  });
});
