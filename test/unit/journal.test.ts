// The write journal: what a WriteBehind holds through a database outage is on local disk, and replayed by the next
// start in order and once, after a simulated crash (a second WriteBehind on the same file, the first never closed)
// and after a real one (a child process SIGKILLed while it holds writes).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import winston from 'winston';
import type { Db } from '../../services/db/db.ts';
import { parseJournal } from '../../services/db/journal.ts';
import { openPglite } from '../../services/db/pglite.ts';
import { WriteBehind, type Executor } from '../../services/db/writeBehind.ts';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/journal-crash-child.ts');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const syntaxError = () => Object.assign(new Error('syntax error at or near "bad"'), { code: '42601' });

/** A logger that keeps what it is given, to check what was reported. */
function captureLog() {
  const entries: { level: string; message: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    objectMode: true,
    write(info: { level: string; message: string }, _enc, cb) {
      entries.push(info);
      cb();
    },
  });
  const log = winston.createLogger({ level: 'debug', transports: [new winston.transports.Stream({ stream })] });
  return { log, entries };
}

/**
 * A database that refuses connections until `up` is set, and records the values it was asked to put, in order.
 * 'bad' is refused for its content (a syntax error), and takes the database down again (to hold what follows).
 */
function fakeDb() {
  const state = { up: false, put: [] as string[], calls: 0 };
  const db = {
    query: async (_text: string, params?: readonly unknown[]) => {
      state.calls++;
      if (!state.up) throw refused();
      const v = String(params?.[0]);
      if (v === 'bad') {
        state.up = false;
        throw syntaxError();
      }
      state.put.push(v);
      return { rows: [], rowCount: 1 };
    },
  };
  return { state, db };
}

/** Waits until cond() holds (fails the test after timeoutMs). */
async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Descriptors of this process open on `file` (Linux). */
function openFds(file: string): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;
}

const executors = {
  put: (db, d: { v: string }) => db.query('put', [d.v]),
} satisfies Record<string, Executor>;

describe('write journal', () => {
  let dir: string;
  let journalPath: string;
  const opened: WriteBehind[] = [];
  const silent = winston.createLogger({ silent: true });

  async function open(db: Pick<Db, 'query'>, opts: { log?: winston.Logger; maxBuffered?: number; journalCompactMinBytes?: number } = {}) {
    const w = await WriteBehind.open({ db, log: opts.log ?? silent, journalPath, executors, retryBaseMs: 5, retryMaxMs: 20, ...opts });
    opened.push(w);
    return w;
  }
  const journal = (): string => fs.readFileSync(journalPath, 'utf8');
  const lines = (): Record<string, unknown>[] =>
    journal()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const entry = (seq: number, v: string, kind = 'put') => JSON.stringify({ seq, kind, data: { v }, at: new Date().toISOString() }) + '\n';

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-journal-'));
    journalPath = path.join(dir, 'nested', 'dir', 'writes.jsonl');
  });
  afterEach(() => {
    for (const w of opened.splice(0)) w.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('appends each write to the file before write() returns, creating the directory', async () => {
    const { db } = fakeDb();
    const w = await open(db);
    expect(fs.existsSync(journalPath)).to.equal(true);
    expect(journal()).to.equal('');
    void w.write('put', { v: 'a' });
    const after1 = lines();
    void w.write('put', { v: 'b' });
    expect(after1).to.have.length(1);
    expect(after1[0]).to.include({ seq: 1, kind: 'put' });
    expect(after1[0]!.data).to.deep.equal({ v: 'a' });
    expect(Date.parse(after1[0]!.at as string)).to.be.closeTo(Date.now(), 5000);
    expect(lines().map((l) => l.seq)).to.deep.equal([1, 2]);
  });

  it('records progress while writes are held, and truncates the file once everything is written', async () => {
    const { state, db } = fakeDb();
    // Holds the second write in the database until released, to look at the file between the two.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inSecond = new Promise<void>((r) => (entered = r));
    const gated = {
      query: async (text: string, params?: readonly unknown[]) => {
        if (state.up && params?.[0] === 'b') {
          entered();
          await gate;
        }
        return db.query(text, params);
      },
    };
    const w = await open(gated);
    const results = ['a', 'b', 'c'].map((v) => w.write('put', { v }));
    await new Promise((r) => setTimeout(r, 30));
    expect(lines().map((l) => l.seq)).to.deep.equal([1, 2, 3]);
    state.up = true;
    w.retryNow();
    await inSecond;
    expect(lines().slice(3)).to.deep.equal([{ done: 1 }]);
    release();
    expect(await Promise.all(results)).to.deep.equal([true, true, true]);
    expect(state.put).to.deep.equal(['a', 'b', 'c']);
    expect(fs.statSync(journalPath).size).to.equal(0);
    // Appending goes on at the start of the emptied file.
    state.up = false;
    void w.write('put', { v: 'd' });
    expect(lines()).to.have.length(1);
    expect(lines()[0]!.data).to.deep.equal({ v: 'd' });
  });

  it('replays after a crash (the first instance never closed): every held write once, in order, before new ones', async () => {
    const first = fakeDb();
    first.state.up = true;
    const w1 = await open(first.db);
    // Two are written, then the database goes away and three are held.
    expect(await w1.write('put', { v: 'w1' })).to.equal(true);
    void w1.write('put', { v: 'w2' });
    await w1.flush(1000);
    first.state.up = false;
    for (const v of ['h1', 'h2', 'h3']) void w1.write('put', { v });
    await new Promise((r) => setTimeout(r, 20));
    expect(w1.pending).to.equal(3);

    const second = fakeDb();
    second.state.up = true;
    const w2 = await open(second.db);
    expect(w2.counters.replayed).to.equal(3);
    expect(await w2.write('put', { v: 'new' })).to.equal(true);
    expect(await w2.flush(1000)).to.equal(true);
    expect(second.state.put).to.deep.equal(['h1', 'h2', 'h3', 'new']);
    expect(first.state.put).to.deep.equal(['w1', 'w2']);
    expect(fs.statSync(journalPath).size).to.equal(0);

    // A third start has nothing to replay.
    const third = fakeDb();
    third.state.up = true;
    const w3 = await open(third.db);
    expect(w3.counters.replayed).to.equal(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(third.state.calls).to.equal(0);
  });

  it('keeps what close() could not write for the next start, and closes the file', async () => {
    const { db } = fakeDb();
    const w1 = await open(db);
    const held = w1.write('put', { v: 'x' });
    expect(openFds(journalPath)).to.equal(1);
    w1.close();
    expect(openFds(journalPath)).to.equal(0);
    expect(await held).to.equal(false);
    expect(await w1.write('put', { v: 'after close' })).to.equal(false);
    expect(lines().map((l) => (l.data as { v: string }).v)).to.deep.equal(['x']);

    const next = fakeDb();
    next.state.up = true;
    const w2 = await open(next.db);
    expect(await w2.flush(1000)).to.equal(true);
    expect(next.state.put).to.deep.equal(['x']);
  });

  it('does not replay a write refused for its content (it is marked done)', async () => {
    const first = fakeDb();
    const w1 = await open(first.db);
    for (const v of ['bad', 'a', 'b']) void w1.write('put', { v });
    first.state.up = true; // 'bad' is refused, and takes the database down again: 'a' and 'b' are held
    w1.retryNow();
    await until(() => w1.counters.failed === 1);
    expect(w1.pending).to.equal(2);
    expect(lines()).to.deep.include({ done: 1 });

    const second = fakeDb();
    second.state.up = true;
    const w2 = await open(second.db);
    expect(await w2.flush(1000)).to.equal(true);
    expect(second.state.put).to.deep.equal(['a', 'b']);
  });

  it('does not replay a write dropped for space (maxBuffered)', async () => {
    const first = fakeDb();
    const w1 = await open(first.db, { maxBuffered: 2 });
    for (const v of ['1', '2', '3']) void w1.write('put', { v });
    expect(w1.counters.dropped).to.equal(1);

    const second = fakeDb();
    second.state.up = true;
    const w2 = await open(second.db);
    expect(await w2.flush(1000)).to.equal(true);
    expect(second.state.put).to.deep.equal(['2', '3']);
  });

  it('bounds the file through a long outage: dropped writes are compacted away', async () => {
    const first = fakeDb();
    const w1 = await open(first.db, { maxBuffered: 3, journalCompactMinBytes: 1000 });
    const sizes: number[] = [];
    for (let i = 1; i <= 500; i++) {
      void w1.write('put', { v: String(i) });
      sizes.push(fs.statSync(journalPath).size);
    }
    const line = entry(500, '500').length;
    expect(Math.max(...sizes), 'never far beyond the threshold').to.be.lessThan(1000 + 2 * line);
    expect(sizes.at(-1)).to.be.lessThan(1000 + 2 * line);
    expect(w1.counters.dropped).to.equal(497);

    const second = fakeDb();
    second.state.up = true;
    const w2 = await open(second.db);
    expect(await w2.flush(1000)).to.equal(true);
    expect(second.state.put).to.deep.equal(['498', '499', '500']);
  });

  it('ignores a cut last line (a crash while writing it), with a warning', async () => {
    fs.mkdirSync(path.dirname(journalPath), { recursive: true });
    fs.writeFileSync(journalPath, entry(1, 'a') + entry(2, 'b') + entry(3, 'c').slice(0, 25));
    const { log, entries } = captureLog();
    const { state, db } = fakeDb();
    state.up = true;
    const w = await open(db, { log });
    expect(await w.flush(1000)).to.equal(true);
    expect(state.put).to.deep.equal(['a', 'b']);
    expect(entries.some((e) => e.level === 'warn' && /last line is incomplete/.test(e.message))).to.equal(true);
    expect(entries.filter((e) => e.level === 'error')).to.deep.equal([]);
  });

  it('skips a corrupt line in the middle, and one of an unknown kind, with an error, and replays the rest', async () => {
    fs.mkdirSync(path.dirname(journalPath), { recursive: true });
    fs.writeFileSync(journalPath, entry(1, 'a') + '{"seq":2,"kind":"put",garbage\n' + entry(3, 'gone', 'removed kind') + '[1,2]\n' + entry(5, 'e') + '{"done":99}\n');
    const { log, entries } = captureLog();
    const { state, db } = fakeDb();
    state.up = true;
    const w = await open(db, { log });
    expect(w.counters.replayed).to.equal(2);
    expect(w.counters.failed).to.equal(1);
    expect(await w.flush(1000)).to.equal(true);
    expect(state.put).to.deep.equal(['a', 'e']);
    const errors = entries.filter((e) => e.level === 'error').map((e) => e.message);
    expect(errors.filter((m) => /corrupt line/.test(m))).to.have.length(2);
    expect(errors.filter((m) => /unknown kind/.test(m))).to.have.length(1);
    expect(fs.statSync(journalPath).size, 'the unknown kind is not kept').to.equal(0);
    // seq goes on after the highest one seen (99), so old "done" lines can never hide a new write.
    state.up = false;
    void w.write('put', { v: 'next' });
    expect(lines()[0]).to.include({ seq: 100 });
  });

  it('parseJournal: entries not done, in seq order; done lines for unknown seqs are harmless', () => {
    const text = entry(2, 'b') + entry(1, 'a') + '{"done":2}\n' + '{"done":7}\n' + entry(3, 'c');
    const { entries, maxSeq } = parseJournal(text, silent, 'x');
    expect(entries.map((e) => e.seq)).to.deep.equal([1, 3]);
    expect(maxSeq).to.equal(7);
  });

  it('refuses data it cannot serialize, at once', async () => {
    const { db } = fakeDb();
    const w = await open(db);
    const cyclic: { v: string; self?: unknown } = { v: 'x' };
    cyclic.self = cyclic;
    expect(await w.write('put', cyclic)).to.equal(false);
    expect(w.counters.failed).to.equal(1);
    expect(w.pending).to.equal(0);
    expect(journal()).to.equal('');
  });

  describe('on PGlite', function () {
    this.timeout(120_000);
    let pg: Db;
    before(async () => {
      pg = await openPglite(null);
    });
    after(async () => {
      await pg?.close();
    });

    it('a replay that runs twice does not apply twice (idempotent executors)', async () => {
      await pg.query('create table replayed (id int primary key, v text not null, pos serial)');
      let runs = 0;
      const pgExecutors = {
        row: (db, d: { id: number; v: string }) => {
          if (db === pg) runs++;
          return db.query('insert into replayed (id, v) values ($1, $2) on conflict (id) do nothing', [d.id, d.v]);
        },
      } satisfies Record<string, Executor>;
      const down = fakeDb().db;
      const w1 = await WriteBehind.open({ db: down, log: silent, journalPath, executors: pgExecutors, retryBaseMs: 5 });
      opened.push(w1);
      for (let id = 1; id <= 5; id++) void w1.write('row', { id, v: `v${id}` });
      const crashed = journal();

      const w2 = await WriteBehind.open({ db: pg, log: silent, journalPath, executors: pgExecutors });
      opened.push(w2);
      expect(await w2.flush(5000)).to.equal(true);
      w2.close();
      // As if the process died after the rows committed but before the journal learned it: the same journal again.
      fs.writeFileSync(journalPath, crashed);
      const w3 = await WriteBehind.open({ db: pg, log: silent, journalPath, executors: pgExecutors });
      opened.push(w3);
      expect(w3.counters.replayed).to.equal(5);
      expect(await w3.flush(5000)).to.equal(true);
      expect(runs, 'replayed twice').to.equal(10);
      const { rows } = await pg.query<{ id: number; v: string }>('select id, v from replayed order by pos');
      expect(rows).to.deep.equal([1, 2, 3, 4, 5].map((id) => ({ id, v: `v${id}` })));
    });

    it('survives a real crash: a child process SIGKILLed with writes held; all of them land once, in order', async () => {
      const N = 200;
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, journalPath, String(N)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('ready\n')) resolve();
        });
        void exited.then(({ code }) => reject(new Error(`child exited (${code}) before ready: ${stderr}`)));
      });
      // Let it go on writing for a moment, so it is killed in the middle of its appends.
      await new Promise((r) => setTimeout(r, 30));
      child.kill('SIGKILL');
      expect((await exited).signal).to.equal('SIGKILL');

      await pg.query('create table crashed (i int primary key, at timestamptz not null, pos serial)');
      const { log, entries } = captureLog();
      const w = await WriteBehind.open({
        db: pg,
        log,
        journalPath,
        executors: { row: (db, d: { i: number; at: string }) => db.query('insert into crashed (i, at) values ($1, $2) on conflict do nothing', [d.i, d.at]) },
      });
      opened.push(w);
      const replayed = w.counters.replayed;
      console.log(`      (the child had queued ${replayed} writes when it was killed)`);
      expect(replayed).to.be.at.least(N);
      expect(await w.flush(60_000)).to.equal(true);
      const { rows } = await pg.query<{ i: number }>('select i from crashed order by pos');
      expect(rows.length).to.equal(replayed);
      // Exactly 1..M in the order they were written: nothing acknowledged is lost, nothing is repeated.
      expect(rows.every((r, k) => r.i === k + 1), 'rows 1..M in order').to.equal(true);
      expect(w.counters.written).to.equal(replayed);
      expect(entries.filter((e) => e.level === 'error')).to.deep.equal([]);
      expect(fs.statSync(journalPath).size).to.equal(0);
    });
  });
});
