// The origin's side of Low-Latency HLS, against a real app with a stage on air (real mediasoup, FFmpeg, the live
// writer): blocking playlist reloads answered as the part they wait for is published, refused when too far ahead or
// malformed, bounded in time, freed when their clients hang up, all answered when the broadcast ends; preload-hinted
// parts held until written; and the live folder (playlist, init section, segments, parts) on the fast path.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import type { Stage } from '../../services/sfu/stage.ts';
import { playlistHas, playlistState } from '../../services/http/live.ts';
import { startTestApp } from '../support/app.ts';
import { eventually } from '../support/browser.ts';
import { ResourceTracker, type LiveResource } from '../support/handles.ts';
import { TempDir } from '../support/media.ts';
import { SyntheticPerformer } from '../support/synthetic.ts';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Wall clock (ms) when the whole response had arrived. */
  at: number;
}

/** A request of its own connection (so that hanging up is closing that connection), path sent byte for byte. */
function request(port: number, rawPath: string, method = 'GET'): { req: http.ClientRequest; reply: Promise<Reply> } {
  const req = http.request({ host: '127.0.0.1', port, method, path: rawPath, agent: false });
  const reply = new Promise<Reply>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), at: Date.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.end();
  return { req, reply };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Nearest-rank percentile. */
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)]!;
const partName = (msn: number, part: number) => `part_${String(msn).padStart(5, '0')}_${part}.m4s`;

/** The app's own periodic work and the test's polling (as in test/broadcast/lifecycle.test.ts). */
const appOwned = (r: LiveResource) => /node-cron|@electric-sql\/pglite|workerPool\.ts|mocha\/lib|test\/support\/browser\.ts/.test(r.stack);

describe('LL-HLS origin: blocking playlist reloads and preload-hinted parts', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let app: App;
  let stage: Stage;
  let sender: SyntheticPerformer;

  const writer = () => stage.broadcast!.mixer.publisher;
  const ffmpegPid = () => stage.broadcast!.mixer.ffmpeg.pid!;
  const live = (file: string) => `/live/${stage.id}/${file}`;
  /** The part the current playlist hints at. */
  const hinted = () => {
    const hint = playlistState(writer().text).hint;
    const m = /^part_(\d+)_(\d+)\.m4s$/.exec(hint ?? '');
    if (!m) throw new Error(`no part hint in the playlist:\n${writer().text}`);
    return { msn: Number(m[1]), part: Number(m[2]), uri: hint! };
  };
  /**
   * Resolves with the next part published, the playlist published with it, and how many requests the origin held just
   * before (these listeners are registered before any request they measure, so they run before the origin's; a
   * segment's last part is published with a 'segmentListed' first, which wakes the origin too).
   */
  const nextPart = () =>
    new Promise<{ msn: number; part: number; uri: string; publishedAtMs: number; text: string; held: number }>((resolve) => {
      const w = writer();
      let held = 0;
      const onListed = () => (held = Math.max(held, app.liveOrigin.held));
      const on = (p: { msn: number; part: number; uri: string; publishedAtMs: number }) => {
        w.observer.off('partPublished', on);
        w.observer.off('segmentListed', onListed);
        resolve({ ...p, text: w.text, held: Math.max(held, app.liveOrigin.held) });
      };
      w.observer.on('segmentListed', onListed);
      w.observer.on('partPublished', on);
    });
  /**
   * The stalled mix: FFmpeg stopped (SIGSTOP), and what it had written before published (the writer's queue drained:
   * no part for 500 ms), so nothing more is published until it is continued.
   */
  async function stalled<T>(fn: () => Promise<T>): Promise<T> {
    const pid = ffmpegPid();
    process.kill(pid, 'SIGSTOP');
    try {
      let last = Date.now();
      const on = () => (last = Date.now());
      writer().observer.on('partPublished', on);
      await eventually(async () => Date.now() - last, (quietMs) => quietMs >= 500, 10_000, 50);
      writer().observer.off('partPublished', on);
      return await fn();
    } finally {
      process.kill(pid, 'SIGCONT');
      await caughtUp();
    }
  }
  /** After a stall FFmpeg works through its backlog in a burst of parts: back to real time once they are spaced again. */
  async function caughtUp(): Promise<void> {
    let prev = (await nextPart()).publishedAtMs;
    for (let i = 0; i < 200; i++) {
      const p = await nextPart();
      if (p.publishedAtMs - prev >= 100) return;
      prev = p.publishedAtMs;
    }
    throw new Error('the mix did not get back to real time');
  }

  before(async () => {
    tmp = new TempDir();
    // 2 s segments: a held request may wait 3 target durations, 6 s, room for a thousand connections on a busy machine.
    app = await startTestApp({ CDN_DIR: tmp.path, HLS_SEGMENT_SECONDS: '2' });
    const created = await app.stages.create('LL-HLS origin');
    stage = await app.registry.open(created.id);
    sender = await SyntheticPerformer.start(stage.router, 440);
    await app.onAir.start(stage.id);
    await stage.broadcast!.mixer.attach('sender', sender.producer, 'Sender');
    const s = await eventually(async () => playlistState(writer().text), (st) => st.complete >= 1 && st.hint !== null, 20_000, 50);
    expect(s.complete, `two segments published:\n${writer().text}`).to.be.at.least(1);
    expect(writer().text).to.match(/#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES/);
  });
  after(async () => {
    await sender?.stop();
    await app?.close();
    tmp?.remove();
  });

  it('serves the live folder on the fast path: playlist, init section, segment and part, with the Express path\'s headers', async () => {
    const text = writer().text;
    const st = playlistState(text);
    const segment = /^seg_\d{5}\.m4s$/m.exec(text)?.[0];
    const init = /#EXT-X-MAP:URI="(init_\d+\.mp4)"/.exec(text)?.[1];
    const part = st.last ? partName(st.last.msn, st.last.part) : undefined;
    expect([segment, init, part], text).to.not.include(undefined);
    const strip = (h: http.IncomingHttpHeaders) => {
      const { date: _d, connection: _c, 'keep-alive': _k, ...rest } = h;
      return rest;
    };
    const expected: [string, string, string][] = [
      ['index.m3u8', 'application/vnd.apple.mpegurl', 'no-cache, max-age=1'],
      [init!, 'audio/mp4', 'public, max-age=31536000, immutable'],
      [segment!, 'audio/mp4', 'public, max-age=31536000, immutable'],
      [part!, 'audio/mp4', 'public, max-age=31536000, immutable'],
    ];
    for (const [file, type, cache] of expected) {
      // Twice: the first may have to read the disk; the second comes from memory.
      for (const round of [1, 2]) {
        const before = app.liveOrigin.served;
        const fast = await request(app.port, live(file)).reply;
        expect(app.liveOrigin.served - before, `${file} (${round}) on the fast path`).to.equal(1);
        expect(fast.status, file).to.equal(200);
        expect(fast.headers['content-type'], file).to.equal(type);
        expect(fast.headers['cache-control'], file).to.equal(cache);
        expect(fast.headers['access-control-allow-origin'], file).to.equal('*');
        expect(fast.headers['x-content-type-options'], file).to.equal('nosniff');
        expect(fast.headers['etag'], file).to.be.a('string');
        if (file !== 'index.m3u8') expect(fast.body.equals(fs.readFileSync(path.join(tmp.path, 'live', stage.id, file))), `${file}: the bytes on disk`).to.equal(true);
        const slow = await request(app.port, `/LIVE/${stage.id}/${file}`).reply;
        expect(app.liveOrigin.served - before, `/LIVE/${file} went through Express`).to.equal(1);
        if (file !== 'index.m3u8') {
          expect(strip(slow.headers), file).to.deep.equal(strip(fast.headers));
          expect(slow.body.equals(fast.body), file).to.equal(true);
        } else {
          expect(slow.headers['content-type']).to.equal(type);
          expect(slow.headers['cache-control']).to.equal(cache);
        }
      }
    }
    // The init section is what a player reads first: an MP4 with an AAC track.
    const initBytes = fs.readFileSync(path.join(tmp.path, 'live', stage.id, init!));
    expect(initBytes.subarray(4, 8).toString('latin1')).to.equal('ftyp');
    expect(initBytes.includes(Buffer.from('mp4a'))).to.equal(true);
  });

  it('answers a blocking reload for the next part within 50 ms of its publication (20 parts)', async () => {
    const latencies: number[] = [];
    const gaps: number[] = [];
    let atOnce = 0;
    // Parts can come in bursts (FFmpeg's output, the writer's queue): a request sent just after one may find the next
    // already published, and is answered at once. Those are counted apart; 20 that were held are measured.
    for (let i = 0; latencies.length < 20; i++) {
      expect(i, `held requests measured: ${latencies.length}, answered at once: ${atOnce}`).to.be.below(60);
      const prev = await nextPart(); // just published: the next one is most likely a part's duration away
      const want = hinted();
      const published = nextPart();
      const sentAt = Date.now();
      const r = request(app.port, live(`index.m3u8?_HLS_msn=${want.msn}&_HLS_part=${want.part}`));
      const p = await published;
      const res = await r.reply;
      expect(p.uri, 'the hint named the next part').to.equal(want.uri);
      expect(p.publishedAtMs).to.be.at.least(sentAt);
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
      expect(res.headers['cache-control']).to.equal('no-cache, max-age=1');
      expect(res.headers['access-control-allow-origin']).to.equal('*');
      expect(p.text).to.include(`URI="${want.uri}"`);
      gaps.push(p.publishedAtMs - prev.publishedAtMs);
      if (p.held === 0) {
        // It reached the origin after the part: answered at once, with that playlist or a newer one.
        atOnce++;
        expect(playlistHas(playlistState(res.body.toString()), want), 'it lists the part').to.equal(true);
        continue;
      }
      expect(res.body.toString(), 'the playlist published with that part').to.equal(p.text);
      latencies.push(res.at - p.publishedAtMs);
    }
    const summary = { p50: pct(latencies, 50), p95: pct(latencies, 95), max: Math.max(...latencies), n: latencies.length };
    console.log(`      part published → held playlist received (ms): ${JSON.stringify(summary)}; all: ${latencies.join(' ')}`);
    console.log(`      (answered at once, the part already out: ${atOnce}; gaps between parts, ms: ${gaps.join(' ')})`);
    expect(summary.max, `latencies ${latencies.join(', ')}`).to.be.below(50);
    expect(app.liveOrigin.held, 'nothing left held').to.equal(0);
  });

  it('holds a request for the hinted part until it is written, then serves it (10 parts); a part further ahead or not hinted is a 404 at once', async () => {
    const latencies: number[] = [];
    let atOnce = 0;
    for (let i = 0; latencies.length < 10; i++) {
      expect(i, `held part requests measured: ${latencies.length}, served at once: ${atOnce}`).to.be.below(40);
      await nextPart();
      const want = hinted();
      const published = nextPart();
      const r = request(app.port, live(want.uri));
      const p = await published;
      const res = await r.reply;
      expect(p.uri).to.equal(want.uri);
      expect(res.status).to.equal(200);
      expect(res.headers['content-type']).to.equal('audio/mp4');
      expect(res.headers['cache-control']).to.equal('public, max-age=31536000, immutable');
      expect(res.headers['access-control-allow-origin']).to.equal('*');
      expect(res.body.equals(fs.readFileSync(path.join(tmp.path, 'live', stage.id, want.uri))), 'the part as written').to.equal(true);
      expect(res.body.subarray(4, 8).toString('latin1'), 'a moof').to.equal('moof');
      if (p.held === 0) atOnce++;
      else latencies.push(res.at - p.publishedAtMs);
    }
    const summary = { p50: pct(latencies, 50), p95: pct(latencies, 95), max: Math.max(...latencies), n: latencies.length };
    console.log(`      part published → held part received (ms): ${JSON.stringify(summary)}; all: ${latencies.join(' ')} (served at once, already written: ${atOnce})`);
    expect(summary.max).to.be.below(50);

    await nextPart();
    const want = hinted();
    for (const name of [partName(want.msn, want.part + 1), partName(want.msn + 1, 1), partName(want.msn + 50, 0), 'part_99999_0.m4s']) {
      const t0 = Date.now();
      const res = await request(app.port, live(name)).reply;
      expect(res.status, name).to.equal(404);
      expect(res.headers['cache-control'], name).to.equal('no-store');
      expect(Date.now() - t0, `${name} answered at once`).to.be.below(150);
    }
    expect(app.liveOrigin.held).to.equal(0);
  });

  it('refuses a request two segments ahead, and bad directives, with a 400 at once (both paths alike)', async () => {
    await nextPart();
    const pos = writer().position!;
    const ahead = await request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 2}&_HLS_part=0`)).reply;
    expect(ahead.status).to.equal(400);
    expect(JSON.parse(ahead.body.toString())).to.deep.include({ ok: false });
    expect(JSON.parse(ahead.body.toString()).error.code).to.equal('BAD_REQUEST');
    expect(ahead.headers['cache-control']).to.equal('no-store');
    expect(ahead.headers['access-control-allow-origin']).to.equal('*');
    const aheadNoPart = await request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 5}`)).reply;
    expect(aheadNoPart.status).to.equal(400);

    // One segment ahead is fine: held until its first part.
    const next = request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 1}&_HLS_part=0`));
    const res = await next.reply;
    expect(res.status).to.equal(200);
    expect(playlistState(res.body.toString()).last!.msn).to.be.at.least(pos.msn + 1);

    const bad = [
      '_HLS_msn=abc',
      '_HLS_msn=-1',
      '_HLS_msn=1.5',
      '_HLS_msn=',
      `_HLS_msn=${pos.msn}&_HLS_part=x`,
      '_HLS_part=1',
      `_HLS_msn=${pos.msn}&_HLS_msn=${pos.msn}`,
      `_HLS_msn=${pos.msn}&_HLS_skip=NO`,
      'cb=1&_HLS_msn=abc',
      `cb=1&_HLS_part=0`,
    ];
    const strip = (h: http.IncomingHttpHeaders) => {
      const { date: _d, connection: _c, 'keep-alive': _k, ...rest } = h;
      return rest;
    };
    for (const q of bad) {
      for (const method of ['GET', 'HEAD']) {
        const fast = await request(app.port, live(`index.m3u8?${q}`), method).reply;
        expect(fast.status, `${method} ${q}`).to.equal(400);
        const slow = await request(app.port, `/LIVE/${stage.id}/index.m3u8?${q}`, method).reply;
        expect(slow.status, `${method} /LIVE/ ${q}`).to.equal(400);
        expect(strip(slow.headers), q).to.deep.equal(strip(fast.headers));
        expect(slow.body.equals(fast.body), q).to.equal(true);
        if (method === 'GET') expect(JSON.parse(fast.body.toString()).error.message, q).to.match(/_HLS_/);
      }
    }
    // Other parameters are ignored: the playlist as usual; an old segment is answered at once with the whole playlist.
    const plain = await request(app.port, live('index.m3u8?cb=12345')).reply;
    expect(plain.status).to.equal(200);
    expect(plain.body.toString()).to.match(/^#EXTM3U/);
    const t0 = Date.now();
    const old = await request(app.port, live(`index.m3u8?_HLS_msn=0&_HLS_part=0&_HLS_skip=YES&cb=1`)).reply;
    expect(old.status).to.equal(200);
    expect(Date.now() - t0, 'not held').to.be.below(150);
    expect(playlistState(old.body.toString()).complete).to.be.at.least(pos.msn - 1);
    expect(app.liveOrigin.held).to.equal(0);
  });

  it('1,000 held requests whose clients hang up leave nothing behind: no timer, socket or listener, no waiter', async () => {
    const w = writer();
    const listeners = () => ['partPublished', 'segmentListed', 'ended'].map((e) => w.observer.listenerCount(e as 'partPublished'));
    const baseline = listeners();
    const tracker = new ResourceTracker();
    try {
      await stalled(async () => {
        const startedAt = Date.now();
        const pos = w.position!;
        const hint = hinted();
        const clients = Array.from({ length: 1000 }, (_, i) =>
          request(app.port, i % 5 === 4 ? live(hint.uri) : live(`index.m3u8?_HLS_msn=${pos.msn + (i % 2)}&_HLS_part=${(i % 3) + pos.part + 1}`)),
        );
        for (const c of clients) c.reply.catch(() => undefined);
        const held = await eventually(async () => app.liveOrigin.held, (n) => n === 1000, 5_000, 20);
        expect(held, 'all 1,000 held').to.equal(1000);
        expect(app.liveOrigin.holds.feeds, 'one feed for the one writer').to.equal(1);
        expect(listeners(), 'the origin listens to the writer (once)').to.deep.equal([baseline[0]! + 1, baseline[1]! + 1, baseline[2]! + 1]);
        const during = tracker.alive(appOwned);
        const timers = during.filter((r) => r.type === 'Timeout' && r.stack.includes('services/http/live.ts')).length;
        const sockets = during.filter((r) => r.type === 'TCPWRAP').length;
        expect(timers, 'the tracker sees the held requests\' timers').to.equal(1000);
        expect(sockets, 'and the connections (both ends)').to.be.at.least(2000);
        expect(Date.now() - startedAt, 'all held well within their 6 s').to.be.below(5_000);

        for (const c of clients) c.req.destroy();
        const left = await eventually(async () => app.liveOrigin.held, (n) => n === 0, 2_000, 10);
        expect(left, 'no waiter left').to.equal(0);
        expect(app.liveOrigin.holds.feeds, 'no feed left').to.equal(0);
        expect(listeners(), 'no listener left on the writer').to.deep.equal(baseline);
        const alive = await eventually(async () => tracker.alive(appOwned), (rs) => rs.length === 0, 5_000, 50);
        const describe = alive.map((r) => `${r.type} created at\n${r.stack}`).join('\n---\n');
        expect(alive, `resources still alive after the clients hung up:\n${describe}`).to.deep.equal([]);
        expect(Date.now() - startedAt, 'freed before any timed out').to.be.below(6_000);
      });
    } finally {
      tracker.stop();
    }
  });

  it('a held request times out after 3 target durations: the current playlist (and a held part: 404)', async () => {
    await nextPart();
    const { reloadMs, partMs, reload, part, text } = await stalled(async () => {
      const want = hinted();
      const t0 = Date.now();
      const r = request(app.port, live(`index.m3u8?_HLS_msn=${want.msn}&_HLS_part=${want.part}`)).reply;
      const p = request(app.port, live(want.uri)).reply;
      const [reload, part] = await Promise.all([r, p]);
      return { reloadMs: reload.at - t0, partMs: part.at - t0, reload, part, text: writer().text, want };
    });
    const limit = 3 * 2 * 1000;
    expect(reloadMs, 'held for 3 × TARGETDURATION').to.be.within(limit - 50, limit + 500);
    expect(reload.status).to.equal(200);
    expect(reload.body.toString(), 'the current playlist').to.equal(text);
    expect(partMs).to.be.within(limit - 50, limit + 500);
    expect(part.status).to.equal(404);
    expect(app.liveOrigin.held).to.equal(0);
    console.log(`      held until the time ran out: reload ${reloadMs} ms, part ${partMs} ms (limit ${limit} ms)`);
  });

  it('the broadcast ends: every held request is answered at once with the ENDLIST playlist; then the folder is served as it is', async () => {
    await nextPart();
    const pos = writer().position!;
    const hint = hinted();
    const t0 = Date.now();
    const held = [
      request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 1}&_HLS_part=99`)),
      request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 1}&_HLS_part=99`)),
      request(app.port, `/LIVE/${stage.id}/index.m3u8?_HLS_msn=${pos.msn + 1}&_HLS_part=99`),
      request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 1}`)),
    ];
    const parts = [request(app.port, live(hint.uri)), request(app.port, live(hint.uri))];
    await eventually(async () => app.liveOrigin.held, (n) => n === 6, 2_000, 10);
    expect(app.liveOrigin.held).to.equal(6);
    await app.onAir.stop(stage.id);
    const stoppedAt = Date.now();
    const replies = await Promise.all(held.map((h) => h.reply));
    for (const [i, r] of replies.entries()) {
      expect(r.status, `reload ${i}`).to.equal(200);
      // Part 99 never comes: those wait for the end. Segment msn+1 (reload 3) may be finished by FFmpeg's last flush
      // before the end is published: then it is answered as soon as it is listed, with the playlist listing it.
      const body = r.body.toString();
      if (i === 3 && !body.endsWith('#EXT-X-ENDLIST\n')) {
        expect(playlistHas(playlistState(body), { msn: pos.msn + 1, part: null }), `reload 3: a playlist with segment ${pos.msn + 1}\n${body}`).to.equal(true);
      } else expect(body, `reload ${i}: the ended playlist`).to.match(/#EXT-X-ENDLIST\n$/);
      expect(r.at, `reload ${i} answered by the end, not by its timeout`).to.be.at.most(stoppedAt + 50);
      expect(r.at - t0).to.be.below(6_000);
    }
    for (const [i, r] of (await Promise.all(parts.map((p) => p.reply))).entries()) {
      // The last fragments FFmpeg wrote as it stopped may have made the hinted part.
      expect(r.status, `part ${i}`).to.be.oneOf([200, 404]);
      if (r.status === 200) expect(r.body.equals(fs.readFileSync(path.join(tmp.path, 'live', stage.id, hint.uri)))).to.equal(true);
      expect(r.at).to.be.at.most(stoppedAt + 50);
    }
    expect(app.liveOrigin.held).to.equal(0);
    expect(app.liveOrigin.holds.feeds).to.equal(0);

    // Off air: a blocking request is answered at once from the folder (directives are ignored once ENDLIST is in).
    expect(app.registry.get(stage.id)?.broadcast ?? null).to.equal(null);
    const t1 = Date.now();
    const after = await request(app.port, live(`index.m3u8?_HLS_msn=${pos.msn + 9}&_HLS_part=0`)).reply;
    expect(after.status).to.equal(200);
    expect(after.body.toString()).to.equal(fs.readFileSync(path.join(tmp.path, 'live', stage.id, 'index.m3u8'), 'utf8'));
    expect(after.body.toString()).to.match(/#EXT-X-ENDLIST\n$/);
    expect(Date.now() - t1).to.be.below(150);
    const none = await request(app.port, `/live/NeverOnAir_1/index.m3u8?_HLS_msn=3&_HLS_part=0`).reply;
    expect(none.status, 'a stage never on air').to.equal(404);
    const hintedAfter = await request(app.port, live(partName(pos.msn + 30, 0))).reply;
    expect(hintedAfter.status).to.equal(404);
  });
});
