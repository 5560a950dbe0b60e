// The archive's records (sql/003_archive.sql, sql/006_fmp4_archive.sql, services/db/archive.ts): the durable upload queue (archive_objects)
// and each broadcast's archive status. The same behavioural checks on PGlite in memory and on a real PostgreSQL
// server, plus concurrent claims from two connections on PostgreSQL.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Db } from '../../services/db/db.ts';
import { DEFAULT_SQL_DIR, migrate, openDb, openPglite, openPostgres } from '../../services/db/index.ts';
import { ArchiveRepo, type ArchiveObject, type NewArchiveObject } from '../../services/db/archive.ts';
import { BroadcastRepo } from '../../services/db/broadcasts.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { createDatabase, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { silentLog, tempSqlDir, projectVersions } from './contract.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uid = (prefix: string): string => `${prefix}-${crypto.randomUUID()}`;
const sha = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');
const keysOf = (objs: readonly { key: string }[]): string[] => objs.map((o) => o.key).sort();

/** Removes every stage (broadcasts and archive objects go with them, on delete cascade). */
async function reset(db: Pick<Db, 'query'>): Promise<void> {
  await db.query('delete from stages');
}

/** The database's clock, in ms. */
async function dbNow(db: Pick<Db, 'query'>): Promise<number> {
  const { rows } = await db.query<{ now: unknown }>('select now() as now');
  const v = rows[0]!.now;
  return (v instanceof Date ? v : new Date(String(v))).getTime();
}

function segment(broadcastId: string, n: number, extra: Partial<NewArchiveObject> = {}): NewArchiveObject {
  return {
    broadcastId,
    key: `b/${broadcastId}/hls/seg_${String(n).padStart(5, '0')}.m4s`,
    kind: 'segment',
    localPath: `/tmp/hls/${broadcastId}/seg_${String(n).padStart(5, '0')}.m4s`,
    contentType: 'audio/mp4',
    size: 1000 + n,
    sha256: sha(`${broadcastId}-${n}`),
    seq: n,
    ...extra,
  };
}

function manifest(broadcastId: string, extra: Partial<NewArchiveObject> = {}): NewArchiveObject {
  return {
    broadcastId,
    key: `b/${broadcastId}/manifest.json`,
    kind: 'manifest',
    localPath: `/tmp/spool/${broadcastId}/manifest.json`,
    contentType: 'application/json',
    size: 512,
    sha256: sha(`${broadcastId}-manifest`),
    ...extra,
  };
}

/**
 * The behaviour of ArchiveRepo, on any engine.
 * @param open returns a migrated Db (opened once for the suite, closed by it).
 * @param openEmpty returns a Db on an empty database (no migrations), for the migration check; closed by it.
 */
export function archiveRepoContract(open: () => Promise<Db>, openEmpty?: () => Promise<Db>): void {
  let db: Db;
  let repo: ArchiveRepo;
  let stages: StageRepo;
  let broadcasts: BroadcastRepo;

  const newStage = async (): Promise<string> => {
    const id = uid('stage');
    await stages.create({ id, title: id, performerKeyHash: 'x' });
    return id;
  };
  /** A fresh stage with an open broadcast on it. */
  const newBroadcast = async (stageId?: string): Promise<string> => {
    const id = crypto.randomUUID();
    await broadcasts.start({ id, stageId: stageId ?? (await newStage()) });
    return id;
  };
  const objectsByKey = async (broadcastId: string): Promise<Map<string, ArchiveObject>> =>
    new Map((await repo.objects(broadcastId)).map((o) => [o.key, o]));
  const one = async (broadcastId: string, key: string): Promise<ArchiveObject> => {
    const o = (await objectsByKey(broadcastId)).get(key);
    if (!o) throw new Error(`no object ${key}`);
    return o;
  };
  /** Claims and uploads everything due (with the sha256 each was claimed with); returns the keys uploaded. */
  const uploadAllDue = async (): Promise<string[]> => {
    const done: string[] = [];
    for (;;) {
      const claimed = await repo.claimDue(100, 60);
      if (claimed.length === 0) return done;
      for (const o of claimed) {
        expect(await repo.markUploaded(o.broadcastId, o.key, o.sha256)).to.equal(true);
        done.push(o.key);
      }
    }
  };

  before(async () => {
    db = await open();
    repo = new ArchiveRepo(db);
    stages = new StageRepo(db);
    broadcasts = new BroadcastRepo(db);
  });
  after(async () => {
    await db?.close();
  });
  // The queue is global (claimDue, stats, endBackoff, releaseLeases, deletable look at every broadcast): start each
  // check from an empty one.
  beforeEach(async () => {
    await reset(db);
  });

  describe('enqueue', () => {
    it('enqueue then objects() returns the row with every field', async () => {
      const b = await newBroadcast();
      const full: NewArchiveObject = {
        broadcastId: b,
        key: `stages/s/broadcasts/${b}/tracks/p1.opus`,
        kind: 'track',
        localPath: '/var/spool/p1.opus',
        contentType: 'audio/ogg',
        size: 5_000_000_123,
        sha256: sha('track'),
        seq: 7,
        performerId: 'performer-1',
        durationSeconds: 12.5,
        mediaStart: 3.25,
        programDateTime: '2024-05-01T10:00:00.000Z',
        discontinuity: true,
        run: 2,
      };
      const before = Date.now();
      await repo.enqueue(full);
      const minimal = segment(b, 1);
      delete minimal.seq;
      await repo.enqueue(minimal);
      const after = Date.now();

      const objs = await objectsByKey(b);
      expect(objs.size).to.equal(2);
      const o = objs.get(full.key)!;
      const { nextAttemptAt, ...rest } = o;
      expect(rest).to.deep.equal({
        ...full,
        state: 'pending',
        attempts: 0,
        lastError: null,
        uploadedAt: null,
        localDeletedAt: null,
      });
      expect(nextAttemptAt).to.be.instanceOf(Date);
      expect(nextAttemptAt.getTime()).to.be.within(before - 1000, after + 1000);

      // Optional fields default to null / false.
      const m = objs.get(minimal.key)!;
      expect(m).to.include({
        kind: 'segment',
        size: minimal.size,
        seq: null,
        performerId: null,
        durationSeconds: null,
        mediaStart: null,
        programDateTime: null,
        discontinuity: false,
        run: null,
        state: 'pending',
      });

      // objects(b, kind) filters by kind; another broadcast's objects are not listed.
      expect(keysOf(await repo.objects(b, 'track'))).to.deep.equal([full.key]);
      expect(await repo.objects(await newBroadcast())).to.deep.equal([]);
    });

    it("an FFmpeg run's init section (kind init, sql/006) and its segments carry their run; other kinds are refused", async () => {
      const b = await newBroadcast();
      const init: NewArchiveObject = { broadcastId: b, key: `b/${b}/hls/init_1.mp4`, kind: 'init', localPath: `/tmp/hls/${b}/init_1.mp4`,
        contentType: 'audio/mp4', size: 700, sha256: sha('init_1'), seq: 1, run: 1, mediaStart: 12.5 };
      await repo.enqueue(init);
      await repo.enqueue(segment(b, 14, { run: 1, mediaStart: 12.5, discontinuity: true }));
      expect(await repo.objects(b, 'init')).to.have.length(1);
      expect((await repo.objects(b, 'init'))[0]).to.include({ kind: 'init', seq: 1, run: 1, mediaStart: 12.5, contentType: 'audio/mp4', state: 'pending' });
      expect((await repo.objects(b, 'segment'))[0]).to.include({ seq: 14, run: 1, discontinuity: true });
      // Uploaded like any object; the manifest waits for it too.
      await repo.enqueue(manifest(b));
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal(keysOf([init, segment(b, 14)]));
      let err: unknown = null;
      try {
        await repo.enqueue({ ...init, key: `b/${b}/hls/other.bin`, kind: 'other' as NewArchiveObject['kind'] });
      } catch (e) {
        err = e;
      }
      expect(String(err)).to.match(/archive_objects_kind_check/);
    });

    it('enqueue of the same key with the same sha256 after upload changes nothing', async () => {
      const b = await newBroadcast();
      const seg = segment(b, 1);
      await repo.enqueue(seg);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([seg.key]);
      expect(await repo.markUploaded(b, seg.key, seg.sha256)).to.equal(true);
      const uploaded = await one(b, seg.key);
      expect(uploaded.state).to.equal('uploaded');
      expect(uploaded.uploadedAt).to.be.instanceOf(Date);

      await sleep(20);
      await repo.enqueue({ ...seg, localPath: '/elsewhere/seg_00001.m4s' });
      const again = await one(b, seg.key);
      expect(again.state).to.equal('uploaded');
      expect(again.attempts).to.equal(1);
      expect(again.uploadedAt!.getTime()).to.equal(uploaded.uploadedAt!.getTime());
      expect(again).to.deep.equal(uploaded);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
    });

    it('enqueue with a different sha256 queues the object again from scratch', async () => {
      const b = await newBroadcast();
      const seg = segment(b, 1);
      await repo.enqueue(seg);
      await repo.claimDue(10, 60);
      expect(await repo.markUploaded(b, seg.key, seg.sha256)).to.equal(true);
      await repo.markLocalDeleted(b, seg.key);
      expect((await one(b, seg.key)).localDeletedAt).to.be.instanceOf(Date);

      const rebuilt = { ...seg, sha256: sha('rebuilt'), size: 4242, localPath: '/rebuilt/seg_00001.m4s' };
      await repo.enqueue(rebuilt);
      const o = await one(b, seg.key);
      expect(o).to.include({
        state: 'pending',
        attempts: 0,
        lastError: null,
        uploadedAt: null,
        localDeletedAt: null,
        sha256: rebuilt.sha256,
        size: 4242,
        localPath: '/rebuilt/seg_00001.m4s',
      });
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([seg.key]);
    });

    it('enqueue of a failed object resets it to pending', async () => {
      const b = await newBroadcast();
      const seg = segment(b, 1);
      await repo.enqueue(seg);
      await repo.claimDue(10, 60);
      await repo.markFailed(b, seg.key, 'store said no');
      expect(await one(b, seg.key)).to.include({ state: 'failed', lastError: 'store said no', attempts: 1 });
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);

      await repo.enqueue(seg); // same sha256
      expect(await one(b, seg.key)).to.include({ state: 'pending', attempts: 0, lastError: null });
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([seg.key]);
    });
  });

  describe('claimDue', () => {
    it('hands out at most limit due rows, marks them uploading and counts the attempt', async () => {
      const b = await newBroadcast();
      const segs = [1, 2, 3, 4, 5].map((n) => segment(b, n));
      for (const s of segs) await repo.enqueue(s);

      const first = await repo.claimDue(3, 60);
      expect(first).to.have.length(3);
      for (const o of first) expect(o).to.include({ state: 'uploading', attempts: 1 });
      let objs = await objectsByKey(b);
      for (const o of first) expect(objs.get(o.key)).to.include({ state: 'uploading', attempts: 1 });
      expect([...objs.values()].filter((o) => o.state === 'pending')).to.have.length(2);

      // The lease is set from leaseSeconds.
      const { rows } = await db.query<{ secs: number }>(
        `select extract(epoch from (lease_until - now()))::float8 as secs from archive_objects
         where broadcast_id = $1 and state = 'uploading'`,
        [b],
      );
      expect(rows).to.have.length(3);
      for (const r of rows) expect(Number(r.secs)).to.be.within(55, 60.5);

      const second = await repo.claimDue(10, 60);
      expect(second).to.have.length(2);
      const all = [...keysOf(first), ...keysOf(second)];
      expect(new Set(all).size).to.equal(5);
      expect(all.sort()).to.deep.equal(segs.map((s) => s.key).sort());
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
      objs = await objectsByKey(b);
      for (const o of objs.values()) expect(o).to.include({ state: 'uploading', attempts: 1 });
    });

    it('two claims at once do not hand out the same row', async () => {
      const b = await newBroadcast();
      for (let n = 1; n <= 20; n++) await repo.enqueue(segment(b, n));
      const [x, y] = await Promise.all([repo.claimDue(12, 60), repo.claimDue(12, 60)]);
      const union = [...keysOf(x), ...keysOf(y)];
      expect(new Set(union).size).to.equal(union.length);
      expect(union).to.have.length(20);
    });

    it('does not hand out rows whose next_attempt_at is in the future', async () => {
      const b = await newBroadcast();
      const later = segment(b, 1);
      const now = segment(b, 2);
      await repo.enqueue(later);
      await repo.enqueue(now);
      await db.query(`update archive_objects set next_attempt_at = now() + interval '1 hour' where broadcast_id = $1 and key = $2`, [
        b,
        later.key,
      ]);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([now.key]);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
      expect(await one(b, later.key)).to.include({ state: 'pending', attempts: 0 });

      await db.query(`update archive_objects set next_attempt_at = now() - interval '1 second' where broadcast_id = $1 and key = $2`, [
        b,
        later.key,
      ]);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([later.key]);
    });
  });

  describe('the manifest waits', () => {
    it('is not claimed while another object of its broadcast is not uploaded, then is', async () => {
      const b = await newBroadcast();
      const s1 = segment(b, 1);
      const s2 = segment(b, 2);
      const m = manifest(b);
      await repo.enqueue(m);
      await repo.enqueue(s1);
      await repo.enqueue(s2);

      // Pending siblings: only the segments are handed out.
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal(keysOf([s1, s2]));
      // One uploaded, one still uploading: the manifest still waits.
      expect(await repo.markUploaded(b, s1.key, s1.sha256)).to.equal(true);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
      // A sibling backing off (pending, not due) holds it too.
      await repo.markRetry(b, s2.key, 'timeout', 3600);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
      // A failed sibling holds it too.
      await repo.endBackoff();
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([s2.key]);
      await repo.markFailed(b, s2.key, 'gone');
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);
      expect(await one(b, m.key)).to.include({ state: 'pending', attempts: 0 });

      // All others uploaded: the manifest is handed out.
      await repo.enqueue(s2);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([s2.key]);
      expect(await repo.markUploaded(b, s2.key, s2.sha256)).to.equal(true);
      const claimed = await repo.claimDue(10, 60);
      expect(keysOf(claimed)).to.deep.equal([m.key]);
      expect(claimed[0]).to.include({ kind: 'manifest', state: 'uploading', attempts: 1 });
    });

    it("is not held by another broadcast's unfinished objects", async () => {
      const a = await newBroadcast();
      const other = await newBroadcast();
      const seg = segment(a, 1);
      await repo.enqueue(seg);
      await repo.claimDue(10, 60);
      expect(await repo.markUploaded(a, seg.key, seg.sha256)).to.equal(true);

      // The other broadcast: one object uploading, one pending but backing off.
      const o1 = segment(other, 1);
      const o2 = segment(other, 2);
      await repo.enqueue(o1);
      await repo.enqueue(o2);
      expect(await repo.claimDue(10, 60)).to.have.length(2);
      await repo.markRetry(other, o2.key, 'later', 3600);
      await repo.enqueue(manifest(other));

      const m = manifest(a);
      await repo.enqueue(m);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([m.key]);
    });

    it('a manifest alone (nothing else in its broadcast) is claimed', async () => {
      const b = await newBroadcast();
      await repo.enqueue(manifest(b));
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([manifest(b).key]);
    });
  });

  describe('retries and backoff', () => {
    it('markRetry puts the row back to pending, due after the delay, with the error', async () => {
      const b = await newBroadcast();
      const seg = segment(b, 1);
      await repo.enqueue(seg);
      await repo.claimDue(10, 60);
      const before = Date.now();
      await repo.markRetry(b, seg.key, 'HTTP 503 SlowDown', 30);
      const after = Date.now();
      const o = await one(b, seg.key);
      expect(o).to.include({ state: 'pending', lastError: 'HTTP 503 SlowDown', attempts: 1 });
      expect(o.nextAttemptAt.getTime()).to.be.within(before + 30_000 - 1000, after + 30_000 + 1000);
      const { rows } = await db.query<{ lease_until: unknown }>('select lease_until from archive_objects where broadcast_id = $1', [b]);
      expect(rows[0]!.lease_until).to.equal(null);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);

      // markRetry only acts on an upload in flight.
      await repo.markRetry(b, seg.key, 'other', 5);
      expect(await one(b, seg.key)).to.include({ lastError: 'HTTP 503 SlowDown' });

      // A long error is cut to 2000 characters.
      const s2 = segment(b, 2);
      await repo.enqueue(s2);
      await repo.claimDue(10, 60);
      await repo.markRetry(b, s2.key, 'e'.repeat(5000), 30);
      expect((await one(b, s2.key)).lastError).to.have.length(2000);
    });

    it('endBackoff makes backing-off rows due now and returns their count', async () => {
      const b = await newBroadcast();
      const s1 = segment(b, 1);
      const s2 = segment(b, 2);
      const s3 = segment(b, 3);
      for (const s of [s1, s2, s3]) await repo.enqueue(s);
      expect(await repo.claimDue(2, 60)).to.have.length(2); // s1, s2 (oldest first)
      await repo.markRetry(b, s1.key, 'down', 600);
      await repo.markRetry(b, s2.key, 'down', 600);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([s3.key]);
      expect(await repo.claimDue(10, 60)).to.deep.equal([]);

      expect(await repo.endBackoff()).to.equal(2);
      const now = await dbNow(db);
      for (const k of [s1.key, s2.key]) expect((await one(b, k)).nextAttemptAt.getTime()).to.be.at.most(now);
      expect(await repo.endBackoff()).to.equal(0);
      const again = await repo.claimDue(10, 60);
      expect(keysOf(again)).to.deep.equal([s1.key, s2.key].sort());
      for (const o of again) expect(o.attempts).to.equal(2);
    });

    it('stats() counts each state and the rows backing off', async () => {
      expect(await repo.stats()).to.deep.equal({ pending: 0, uploading: 0, uploaded: 0, failed: 0, backingOff: 0 });
      const b = await newBroadcast();
      const [a, f, r, u, p] = [1, 2, 3, 4, 5].map((n) => segment(b, n)) as [
        NewArchiveObject,
        NewArchiveObject,
        NewArchiveObject,
        NewArchiveObject,
        NewArchiveObject,
      ];
      for (const s of [a, f, r, u]) await repo.enqueue(s);
      expect(await repo.claimDue(10, 60)).to.have.length(4);
      expect(await repo.markUploaded(b, a.key, a.sha256)).to.equal(true);
      await repo.markFailed(b, f.key, 'bad');
      await repo.markRetry(b, r.key, 'slow', 600);
      await repo.enqueue(p); // fresh, due now: pending but not backing off
      // u stays uploading.
      expect(await repo.stats()).to.deep.equal({ pending: 2, uploading: 1, uploaded: 1, failed: 1, backingOff: 1 });

      // A pending row not yet tried but scheduled later is not "backing off" (attempts 0).
      await db.query(`update archive_objects set next_attempt_at = now() + interval '1 hour' where broadcast_id = $1 and key = $2`, [b, p.key]);
      expect((await repo.stats()).backingOff).to.equal(1);

      expect(await repo.endBackoff()).to.equal(2);
      expect(await repo.stats()).to.deep.equal({ pending: 2, uploading: 1, uploaded: 1, failed: 1, backingOff: 0 });
    });
  });

  describe('leases', () => {
    it('releaseLeases(false) returns only uploads whose lease expired; releaseLeases(true) returns all', async () => {
      const b = await newBroadcast();
      const short = segment(b, 1);
      const long = segment(b, 2);
      await repo.enqueue(short);
      expect(keysOf(await repo.claimDue(1, 0.2))).to.deep.equal([short.key]);
      await repo.enqueue(long);
      expect(keysOf(await repo.claimDue(1, 60))).to.deep.equal([long.key]);
      // A row that is not uploading is never touched.
      const done = segment(b, 3);
      await repo.enqueue(done);
      await repo.claimDue(1, 0.2);
      expect(await repo.markUploaded(b, done.key, done.sha256)).to.equal(true);

      await sleep(400);
      expect(await repo.releaseLeases(false)).to.equal(1);
      expect(await one(b, short.key)).to.include({ state: 'pending', attempts: 1 });
      expect(await one(b, long.key)).to.include({ state: 'uploading' });
      expect(await one(b, done.key)).to.include({ state: 'uploaded' });
      expect(await repo.releaseLeases(false)).to.equal(0);

      // Released: due again now.
      const reclaimed = await repo.claimDue(10, 60);
      expect(keysOf(reclaimed)).to.deep.equal([short.key]);
      expect(reclaimed[0]!.attempts).to.equal(2);

      expect(await repo.releaseLeases(true)).to.equal(2);
      expect(await one(b, short.key)).to.include({ state: 'pending' });
      expect(await one(b, long.key)).to.include({ state: 'pending' });
      expect(await one(b, done.key)).to.include({ state: 'uploaded' });
      expect(await repo.releaseLeases(true)).to.equal(0);
      expect(keysOf(await repo.claimDue(10, 60))).to.deep.equal([short.key, long.key].sort());
    });
  });

  describe('markUploaded', () => {
    it('succeeds only for an uploading row with the same sha256', async () => {
      const b = await newBroadcast();
      const seg = segment(b, 1);
      await repo.enqueue(seg);
      expect(await repo.markUploaded(b, seg.key, seg.sha256)).to.equal(false); // pending
      expect(await one(b, seg.key)).to.include({ state: 'pending', uploadedAt: null });

      await repo.claimDue(10, 60);
      expect(await repo.markUploaded(b, seg.key, sha('something else'))).to.equal(false);
      expect(await one(b, seg.key)).to.include({ state: 'uploading', uploadedAt: null });
      expect(await repo.markUploaded(b, 'no/such/key', seg.sha256)).to.equal(false);
      expect(await repo.markUploaded(crypto.randomUUID(), seg.key, seg.sha256)).to.equal(false);

      const before = Date.now();
      expect(await repo.markUploaded(b, seg.key, seg.sha256)).to.equal(true);
      const o = await one(b, seg.key);
      expect(o).to.include({ state: 'uploaded', lastError: null });
      expect(o.uploadedAt!.getTime()).to.be.within(before - 1000, Date.now() + 1000);
      expect(await repo.markUploaded(b, seg.key, seg.sha256)).to.equal(false); // already uploaded

      // An upload of old content finishing after the file was rebuilt does not count.
      const s2 = segment(b, 2);
      await repo.enqueue(s2);
      await repo.claimDue(10, 60);
      await repo.enqueue({ ...s2, sha256: sha('rebuilt') });
      expect(await repo.markUploaded(b, s2.key, s2.sha256)).to.equal(false);
      expect(await one(b, s2.key)).to.include({ state: 'pending' });

      // A failed row cannot be marked uploaded.
      const s3 = segment(b, 3);
      await repo.enqueue(s3);
      await repo.claimDue(10, 60);
      await repo.markFailed(b, s3.key, 'x');
      expect(await repo.markUploaded(b, s3.key, s3.sha256)).to.equal(false);
      expect(await one(b, s3.key)).to.include({ state: 'failed' });
    });
  });

  describe('archive status', () => {
    it('beginRecording sets the recording fields, read back by recording()', async () => {
      const stageId = await newStage();
      const b = await newBroadcast(stageId);
      const originAt = new Date(Date.now() - 1234);
      await repo.beginRecording(b, { hlsDir: '/hls/x', spoolDir: '/spool/x', keyPrefix: `stages/${stageId}/broadcasts/${b}/`, originAt });
      const r = await repo.recording(b);
      expect(r).to.not.equal(null);
      expect(r).to.include({
        id: b,
        stageId,
        archiveStatus: 'recording',
        archiveError: null,
        archivedAt: null,
        durationSeconds: null,
        endedAt: null,
        endReason: null,
        hlsDir: '/hls/x',
        spoolDir: '/spool/x',
        keyPrefix: `stages/${stageId}/broadcasts/${b}/`,
      });
      expect(r!.originAt!.getTime()).to.equal(originAt.getTime());
      expect(r!.startedAt).to.be.instanceOf(Date);

      await broadcasts.end(b, 'stopped');
      const ended = await repo.recording(b);
      expect(ended).to.include({ endReason: 'stopped', archiveStatus: 'recording' });
      expect(ended!.endedAt).to.be.instanceOf(Date);

      // A broadcast without beginRecording: status 'recording' (the default), recording fields null.
      const plain = await repo.recording(await newBroadcast());
      expect(plain).to.include({ archiveStatus: 'recording', hlsDir: null, spoolDir: null, keyPrefix: null, originAt: null });
      expect(await repo.recording('no-such-broadcast')).to.equal(null);
    });

    it('completeIfDone is false while recording, without a manifest, or with an object not uploaded; true once after markFinalized', async () => {
      // Still recording, everything (manifest included) uploaded: not complete.
      const rec = await newBroadcast();
      await repo.enqueue(segment(rec, 1));
      await repo.enqueue(manifest(rec));
      await uploadAllDue();
      await uploadAllDue(); // the manifest, once the segment is uploaded
      expect((await repo.objects(rec)).map((o) => o.state)).to.deep.equal(['uploaded', 'uploaded']);
      expect(await repo.completeIfDone(rec)).to.equal(false);
      expect((await repo.recording(rec))!.archiveStatus).to.equal('recording');

      // Finalized, every object uploaded, but no manifest row: not complete.
      const noManifest = await newBroadcast();
      await repo.enqueue(segment(noManifest, 1));
      await uploadAllDue();
      await repo.markFinalized(noManifest, 10);
      expect(await repo.completeIfDone(noManifest)).to.equal(false);
      expect((await repo.recording(noManifest))!.archiveStatus).to.equal('uploading');

      // Finalized with a manifest uploaded, but an object not uploaded: not complete.
      const late = await newBroadcast();
      await repo.enqueue(segment(late, 1));
      await uploadAllDue();
      await repo.enqueue(manifest(late));
      await uploadAllDue();
      const lateSeg = segment(late, 2, { kind: 'playlist', key: `b/${late}/index.m3u8` });
      await repo.enqueue(lateSeg);
      await repo.markFinalized(late, 20.5);
      expect(await repo.completeIfDone(late)).to.equal(false);
      expect(await repo.recording(late)).to.include({ archiveStatus: 'uploading', durationSeconds: 20.5, archivedAt: null });

      // Now every object is uploaded: complete, exactly once.
      await uploadAllDue();
      const before = Date.now();
      expect(await repo.completeIfDone(late)).to.equal(true);
      expect(await repo.completeIfDone(late)).to.equal(false);
      const done = await repo.recording(late);
      expect(done).to.include({ archiveStatus: 'archived', durationSeconds: 20.5, archiveError: null });
      expect(done!.archivedAt).to.be.instanceOf(Date);
      expect(done!.archivedAt!.getTime()).to.be.within(before - 1000, Date.now() + 1000);

      // The first two complete once their blocker is gone.
      await repo.markFinalized(rec, 5);
      expect(await repo.completeIfDone(rec)).to.equal(true);
      expect((await repo.recording(rec))!.archiveStatus).to.equal('archived');
      await repo.enqueue(manifest(noManifest));
      await uploadAllDue();
      expect(await repo.completeIfDone(noManifest)).to.equal(true);

      // markFinalized does not reopen an archived broadcast.
      await repo.markFinalized(late, 99);
      expect(await repo.recording(late)).to.include({ archiveStatus: 'archived', durationSeconds: 20.5 });
    });

    it('fail() sets failed with the reason but never overrides archived', async () => {
      const b = await newBroadcast();
      await repo.fail(b, 'disk full');
      expect(await repo.recording(b)).to.include({ archiveStatus: 'failed', archiveError: 'disk full' });
      // A failed archive is not finalized afterwards.
      await repo.markFinalized(b, 3);
      expect(await repo.recording(b)).to.include({ archiveStatus: 'failed', archiveError: 'disk full' });

      const up = await newBroadcast();
      await repo.markFinalized(up, 3);
      await repo.fail(up, 'upload gave up');
      expect(await repo.recording(up)).to.include({ archiveStatus: 'failed', archiveError: 'upload gave up' });

      const archived = await newBroadcast();
      await repo.enqueue(manifest(archived));
      await uploadAllDue();
      await repo.markFinalized(archived, 1);
      expect(await repo.completeIfDone(archived)).to.equal(true);
      await repo.fail(archived, 'too late');
      const r = await repo.recording(archived);
      expect(r).to.include({ archiveStatus: 'archived', archiveError: null });
      expect(r!.archivedAt).to.be.instanceOf(Date);
    });
  });

  describe('local clean-up', () => {
    it('deletable lists uploaded objects of archived broadcasts past the retention; markLocalDeleted removes them', async () => {
      // Archived broadcast: two segments and the manifest uploaded.
      const a = await newBroadcast();
      const s1 = segment(a, 1);
      const s2 = segment(a, 2);
      const m = manifest(a);
      for (const o of [s1, s2, m]) await repo.enqueue(o);
      await uploadAllDue();
      await uploadAllDue();
      await repo.markFinalized(a, 4);
      expect(await repo.completeIfDone(a)).to.equal(true);

      // Not archived (uploading): its uploaded objects are kept.
      const u = await newBroadcast();
      await repo.enqueue(segment(u, 1));
      await repo.enqueue(manifest(u));
      await uploadAllDue();
      await uploadAllDue();
      await repo.markFinalized(u, 4);
      // Still recording, and failed: kept too.
      const r = await newBroadcast();
      await repo.enqueue(segment(r, 1));
      const f = await newBroadcast();
      await repo.enqueue(segment(f, 1));
      await uploadAllDue();
      await repo.fail(f, 'x');
      expect((await repo.stats()).uploaded).to.equal(7);

      await sleep(10);
      expect(keysOf(await repo.deletable(0, 100))).to.deep.equal(keysOf([s1, s2, m]));
      // Not past the retention yet.
      expect(await repo.deletable(3600, 100)).to.deep.equal([]);
      // Uploaded two hours ago: past an hour's retention.
      await db.query(`update archive_objects set uploaded_at = now() - interval '2 hours' where broadcast_id = $1 and key = $2`, [a, s2.key]);
      const due = await repo.deletable(3600, 100);
      expect(keysOf(due)).to.deep.equal([s2.key]);
      expect(due[0]).to.include({ broadcastId: a, state: 'uploaded', localPath: s2.localPath, localDeletedAt: null });
      // limit, oldest upload first.
      expect(keysOf(await repo.deletable(0, 1))).to.deep.equal([s2.key]);
      expect(await repo.deletable(0, 2)).to.have.length(2);

      await repo.markLocalDeleted(a, s2.key);
      expect((await one(a, s2.key)).localDeletedAt).to.be.instanceOf(Date);
      expect(await repo.deletable(3600, 100)).to.deep.equal([]);
      expect(keysOf(await repo.deletable(0, 100))).to.deep.equal(keysOf([s1, m]));
      await repo.markLocalDeleted(a, s1.key);
      await repo.markLocalDeleted(a, m.key);
      expect(await repo.deletable(0, 100)).to.deep.equal([]);
    });
  });

  describe('listings', () => {
    it('awaitingFinalization lists ended broadcasts still recording, not open, archived, uploading or failed ones', async () => {
      const ended1 = await newBroadcast();
      await broadcasts.end(ended1, 'stopped');
      const open = await newBroadcast();
      const archived = await newBroadcast();
      await repo.enqueue(manifest(archived));
      await uploadAllDue();
      await repo.markFinalized(archived, 1);
      expect(await repo.completeIfDone(archived)).to.equal(true);
      await broadcasts.end(archived, 'stopped');
      const uploading = await newBroadcast();
      await broadcasts.end(uploading, 'stopped');
      await repo.markFinalized(uploading, 1);
      const failed = await newBroadcast();
      await broadcasts.end(failed, 'stopped');
      await repo.fail(failed, 'x');
      const ended2 = await newBroadcast();
      await broadcasts.end(ended2, 'crashed');

      const list = await repo.awaitingFinalization();
      expect(list.map((r) => r.id)).to.deep.equal([ended1, ended2]); // oldest first
      expect(list[1]).to.include({ archiveStatus: 'recording', endReason: 'crashed' });
      expect(list[1]!.endedAt).to.be.instanceOf(Date);
      expect((await repo.recording(open))!.archiveStatus).to.equal('recording');
    });

    it('recordingsForStage lists the stage\'s broadcasts newest first', async () => {
      const stageId = await newStage();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const id = await newBroadcast(stageId);
        ids.push(id);
        if (i < 2) await broadcasts.end(id, 'stopped');
        await sleep(5);
      }
      await newBroadcast(); // another stage
      const recs = await repo.recordingsForStage(stageId);
      expect(recs.map((r) => r.id)).to.deep.equal([...ids].reverse());
      for (const r of recs) expect(r.stageId).to.equal(stageId);
      expect(recs[0]!.startedAt.getTime()).to.be.greaterThan(recs[2]!.startedAt.getTime());
      expect(await repo.recordingsForStage(uid('nobody'))).to.deep.equal([]);
    });
  });

  if (openEmpty) {
    describe('migration 003', () => {
      it('marks broadcasts that had ended before it ran as failed, with a reason', async () => {
        const sql = tempSqlDir({});
        for (const f of ['001_init.sql', '002_broadcasts.sql']) fs.copyFileSync(path.join(DEFAULT_SQL_DIR, f), path.join(sql.dir, f));
        const fresh = await openEmpty();
        try {
          expect(await migrate(fresh, sql.dir, silentLog)).to.deep.equal([1, 2]);
          const { rows: cols } = await fresh.query<{ n: number }>(
            "select count(*)::int as n from information_schema.columns where table_name = 'broadcasts' and column_name = 'archive_status'",
          );
          expect(cols[0]!.n).to.equal(0);
          await new StageRepo(fresh).create({ id: 's-old', title: 'old', performerKeyHash: 'x' });
          await new StageRepo(fresh).create({ id: 's-open', title: 'open', performerKeyHash: 'x' });
          // Written as the code of that time did (the repositories speak today's schema).
          const endedId = crypto.randomUUID();
          const openId = crypto.randomUUID();
          await fresh.query(`insert into broadcasts (id, stage_id, ended_at, end_reason) values ($1, 's-old', now(), 'stopped')`, [endedId]);
          await fresh.query(`insert into broadcasts (id, stage_id) values ($1, 's-open')`, [openId]);

          expect(await migrate(fresh, DEFAULT_SQL_DIR, silentLog)).to.deep.equal((await projectVersions()).filter((v) => v > 2));
          const archive = new ArchiveRepo(fresh);
          expect(await archive.recording(endedId)).to.include({ archiveStatus: 'failed', archiveError: 'recorded before archiving existed' });
          // A broadcast still open when it ran is being recorded.
          expect(await archive.recording(openId)).to.include({ archiveStatus: 'recording', archiveError: null });
          // And the failed one is not waiting for finalization.
          expect((await archive.awaitingFinalization()).map((r) => r.id)).to.deep.equal([]);
        } finally {
          await fresh.close();
          sql.remove();
        }
      });
    });

    describe('migration 006', () => {
      it("keeps the rows queued before it (their run unknown) and accepts init sections after it", async () => {
        const sql = tempSqlDir({});
        for (const f of ['001_init.sql', '002_broadcasts.sql', '003_archive.sql', '004_timeline.sql', '005_broadcast_resource.sql']) {
          fs.copyFileSync(path.join(DEFAULT_SQL_DIR, f), path.join(sql.dir, f));
        }
        const fresh = await openEmpty();
        try {
          expect(await migrate(fresh, sql.dir, silentLog)).to.deep.equal([1, 2, 3, 4, 5]);
          await new StageRepo(fresh).create({ id: 's-ts', title: 'ts', performerKeyHash: 'x' });
          const id = crypto.randomUUID();
          await fresh.query(`insert into broadcasts (id, stage_id) values ($1, 's-ts')`, [id]);
          // Written as the code of that time did: an MPEG-TS segment, no run.
          await fresh.query(
            `insert into archive_objects (broadcast_id, key, kind, local_path, content_type, size, sha256, seq)
             values ($1, 'hls/seg_00000.ts', 'segment', '/hls/seg_00000.ts', 'video/mp2t', 10, $2, 0)`,
            [id, sha('ts')],
          );
          let refused: unknown = null;
          try {
            await fresh.query(`insert into archive_objects (broadcast_id, key, kind, local_path, content_type, size, sha256)
              values ($1, 'hls/init_0.mp4', 'init', '/hls/init_0.mp4', 'audio/mp4', 10, $2)`, [id, sha('init')]);
          } catch (e) {
            refused = e;
          }
          expect(String(refused), 'no init kind before 006').to.match(/archive_objects_kind_check/);

          expect(await migrate(fresh, DEFAULT_SQL_DIR, silentLog)).to.deep.equal((await projectVersions()).filter((v) => v > 5));
          const archive = new ArchiveRepo(fresh);
          expect((await archive.objects(id))[0]).to.include({ key: 'hls/seg_00000.ts', kind: 'segment', run: null, seq: 0 });
          await archive.enqueue({ broadcastId: id, key: 'hls/init_0.mp4', kind: 'init', localPath: '/hls/init_0.mp4', contentType: 'audio/mp4', size: 10,
            sha256: sha('init'), seq: 0, run: 0 });
          expect((await archive.objects(id, 'init'))[0]).to.include({ kind: 'init', run: 0 });
        } finally {
          await fresh.close();
          sql.remove();
        }
      });
    });
  }
}

describe('db: archive repo on PGlite (in memory)', function () {
  this.timeout(60_000);
  archiveRepoContract(
    () => openDb({ kind: 'pglite', dataDir: null }, silentLog),
    () => openPglite(null),
  );
});

describe('db: archive repo on PostgreSQL (real server)', function () {
  this.timeout(60_000);
  let server: PostgresServer;
  let n = 0;

  /** Creates an empty database and returns its URL. */
  const emptyDbUrl = () => createDatabase(server.url, `archive${++n}_${process.pid}`);

  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  archiveRepoContract(
    () => openDb({ kind: 'postgres', url: server.url }, silentLog),
    async () => openPostgres(await emptyDbUrl()),
  );

  describe('concurrent claims from two connections', () => {
    let a: Db;
    let b: Db;
    before(async () => {
      a = await openDb({ kind: 'postgres', url: server.url }, silentLog); // migrated
      b = await openPostgres(server.url);
    });
    after(async () => {
      await a?.close();
      await b?.close();
    });
    beforeEach(async () => {
      await reset(a);
    });

    async function queue(count: number): Promise<string> {
      const stageId = uid('stage');
      await new StageRepo(a).create({ id: stageId, title: 't', performerKeyHash: 'x' });
      const id = crypto.randomUUID();
      await new BroadcastRepo(a).start({ id, stageId });
      const repo = new ArchiveRepo(a);
      for (let i = 1; i <= count; i++) await repo.enqueue(segment(id, i));
      return id;
    }

    it('two claimDue at once on separate connections hand out disjoint rows', async () => {
      const id = await queue(40);
      const [x, y] = await Promise.all([new ArchiveRepo(a).claimDue(25, 60), new ArchiveRepo(b).claimDue(25, 60)]);
      expect(x.length).to.be.at.most(25);
      expect(y.length).to.be.at.most(25);
      const union = [...keysOf(x), ...keysOf(y)];
      expect(new Set(union).size, 'a row handed out twice').to.equal(union.length);
      expect(union).to.have.length(40);
      const objs = await new ArchiveRepo(a).objects(id);
      for (const o of objs) expect(o).to.include({ state: 'uploading', attempts: 1 });
    });

    it('many rounds of parallel claims (two per connection) hand out every row exactly once', async () => {
      const id = await queue(60);
      const claimers = [a, a, b, b].map((db) => new ArchiveRepo(db));
      const seen: string[] = [];
      for (let round = 0; round < 100; round++) {
        const got = await Promise.all(claimers.map((r) => r.claimDue(4, 60)));
        const keys = got.flatMap(keysOf);
        if (keys.length === 0) break;
        seen.push(...keys);
      }
      expect(new Set(seen).size, 'a row handed out twice').to.equal(seen.length);
      expect(seen).to.have.length(60);
      const objs = await new ArchiveRepo(b).objects(id);
      expect(objs).to.have.length(60);
      for (const o of objs) expect(o).to.include({ state: 'uploading', attempts: 1 });
    });
  });
});
