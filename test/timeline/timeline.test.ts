// The timeline: events land where the audio they refer to is, live (EXT-X-DATERANGE) and in the archive
// (timeline.json, chapters.vtt, the VOD playlist); speaking intervals follow who was heard; bad input is refused.
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import type { TimelineFile } from '../../services/timeline/files.ts';
import type { Ack } from '../../services/shared/errors.ts';
import type { ListenResponse } from '../../services/shared/listen.ts';
import type { TimelineEvent } from '../../services/shared/timeline.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm, SAMPLE_RATE, toneDb } from '../support/audio.ts';
import { BrowserSet } from '../support/browser.ts';
import { connectClient } from '../support/client.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { encodeTone, PacketPerformer } from '../support/packets.ts';
import fs from 'node:fs';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function postEvent(app: App, stageId: string, body: unknown, key = TEST_ADMIN_TOKEN): Promise<Response> {
  return fetch(`${app.url}/api/stages/${stageId}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}


/** WebVTT cues (a small parser: header, optional identifiers, timings, text). */
function parseVtt(text: string): { start: number; end: number; text: string }[] {
  expect(text.startsWith('WEBVTT')).to.equal(true);
  const toS = (t: string) => {
    const m = /^(\d{2,}):(\d{2}):(\d{2})\.(\d{3})$/.exec(t);
    expect(m, `timestamp ${t}`).to.not.equal(null);
    return Number(m![1]) * 3600 + Number(m![2]) * 60 + Number(m![3]) + Number(m![4]) / 1000;
  };
  const cues: { start: number; end: number; text: string }[] = [];
  for (const block of text.split(/\n\n+/).slice(1)) {
    const lines = block.split('\n').filter((l) => l !== '');
    const i = lines.findIndex((l) => l.includes('-->'));
    if (i < 0) continue;
    const [a, b] = lines[i]!.split(/\s+-->\s+/);
    cues.push({ start: toS(a!.trim()), end: toS(b!.trim().split(/\s/)[0]!), text: lines.slice(i + 1).join('\n') });
  }
  return cues;
}

describe('timeline', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  let app: App;
  let browsers: BrowserSet;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('alignment: a marker posted as the tone switches agrees with the audible switch within 250 ms, in the archive and in the live DATERANGE', async () => {
    const [low, high] = await Promise.all([encodeTone(440, 2), encodeTone(880, 2)]);
    const stage = await createStage(app, 'Alignment');
    await transition(app, stage.id, 'start');
    const s = app.registry.get(stage.id)!;
    const performer = await PacketPerformer.start(s.router, low);
    try {
      await s.broadcast!.mixer.attach('sender', performer.producer, 'Sender');
      await sleep(6_000);
      // The switch and the marker, at the same instant.
      const switchedAt = await performer.switchTo(high);
      const res = await postEvent(app, stage.id, { type: 'marker', label: 'switch' });
      expect(res.status).to.equal(201);
      const { event } = (await res.json()) as { event: TimelineEvent };
      const postDelayMs = Date.now() - switchedAt;
      await sleep(4_000);
      const live = await (await fetch(`${app.url}/live/${stage.id}/index.m3u8`)).text();
      const tag = live.split('\n').find((l) => l.startsWith('#EXT-X-DATERANGE:') && l.includes(`ID="${event.id}"`));
      expect(tag, `the live playlist carries the marker:\n${live}`).to.not.equal(undefined);
      expect(tag).to.include('CLASS="com.stage-radio.marker"').and.include('X-LABEL="switch"');
      const startDate = Date.parse(/START-DATE="([^"]+)"/.exec(tag!)![1]!);
      const pdt0 = parseMediaPlaylist(fs.readFileSync(path.join(app.stages.links.hlsDir(stage.id), 'index.m3u8'), 'utf8'));
      await transition(app, stage.id, 'stop');
      const { rec } = await waitArchived(app.url, stage.id, 30_000);

      // Where the switch is audible in the archived audio.
      const m4a = tmp.file('alignment.m4a');
      await download(app.url, rec, 'audio', m4a);
      const pcm = decodeToPcm(m4a);
      const win = Math.round(0.01 * SAMPLE_RATE);
      let switchSec = NaN;
      for (let i = Math.round(3 * SAMPLE_RATE); i + win < pcm.length; i += win) {
        // The 880 Hz tone present (not just louder than a 440 Hz gap where the looped 2 s of frames restart).
        const hi = toneDb(pcm, 880, i, win * 2);
        if (hi > -35 && hi > toneDb(pcm, 440, i, win * 2)) {
          switchSec = (i + win) / SAMPLE_RATE;
          break;
        }
      }
      expect(switchSec).to.be.a('number').and.not.be.NaN;
      const timeline = JSON.parse(fs.readFileSync(await (async () => {
        const f = tmp.file('alignment-timeline.json');
        await download(app.url, rec, 'timeline', f);
        return f;
      })(), 'utf8')) as TimelineFile;
      const marker = timeline.events.find((e) => e.id === event.id)!;
      expect(marker, 'the marker is in timeline.json').to.not.equal(undefined);
      const archiveErrorMs = (marker.mediaTime - switchSec) * 1000;
      // The live tag: its START-DATE against the PROGRAM-DATE-TIME at which the switch plays.
      const origin = Date.parse(timeline.originDate!);
      const liveErrorMs = startDate - (origin + switchSec * 1000);
      console.log(`      alignment: switch audible at ${switchSec.toFixed(3)} s; marker mediaTime ${marker.mediaTime.toFixed(3)} s (${archiveErrorMs.toFixed(0)} ms); live START-DATE ${liveErrorMs.toFixed(0)} ms off; posted ${postDelayMs} ms after the switch; first live PDT ${pdt0.segments[0]?.programDateTime}`);
      expect(Math.abs(archiveErrorMs), 'archive: marker vs audible switch').to.be.below(250);
      expect(Math.abs(liveErrorMs), 'live: DATERANGE START-DATE vs audible switch').to.be.below(250);

      // The VOD playlist carries the same tag.
      const vod = fs.readFileSync(await (async () => {
        const f = tmp.file('alignment.m3u8');
        await download(app.url, rec, 'playlist', f);
        return f;
      })(), 'utf8');
      expect(vod).to.include(`#EXT-X-DATERANGE:ID="${event.id}"`);
    } finally {
      performer.stop();
    }
  });

  it('files: timeline.json and chapters.vtt are valid and monotonic; speaking intervals match whose tone was present', async () => {
    const stage = await createStage(app, 'Files');
    const annMic = pulseWav(tmp, 440, { periodSec: 2.0, onSec: 1.0 });
    const bobMic = pulseWav(tmp, 660, { periodSec: 3.0, onSec: 1.2 });
    await browsers.performer(stage.performerUrl, 440, 'Ann', annMic);
    await browsers.performer(stage.performerUrl, 660, 'Bob', bobMic);
    await transition(app, stage.id, 'start');
    const chapters = ['Intro', 'News & weather', 'Music: "Night" <live>'.replace(/[<>]/g, '')];
    for (const [i, title] of chapters.entries()) {
      if (i > 0) await sleep(5_000);
      expect((await postEvent(app, stage.id, { type: 'chapter', title }, stage.performerKey)).status).to.equal(201);
      expect((await postEvent(app, stage.id, { type: 'track', title: `Song ${i}`, artist: 'Band' })).status).to.equal(201);
    }
    await sleep(6_000);
    await transition(app, stage.id, 'stop');
    const { rec } = await waitArchived(app.url, stage.id, 30_000);
    expect(rec.files.map((f) => f.file)).to.include.members(['timeline', 'chapters']);

    const tl = tmp.file('files-timeline.json');
    await download(app.url, rec, 'timeline', tl);
    const timeline = JSON.parse(fs.readFileSync(tl, 'utf8')) as TimelineFile;
    expect(timeline.version).to.equal(1);
    expect(timeline.events.filter((e) => e.type === 'chapter').map((e) => e.data.title)).to.deep.equal(chapters);
    expect(timeline.events.filter((e) => e.type === 'track')).to.have.length(3);
    const times = timeline.events.map((e) => e.mediaTime);
    expect(times, 'events in programme order').to.deep.equal([...times].sort((a, b) => a - b));
    for (const e of timeline.events) expect(Date.parse(e.startDate!)).to.equal(Date.parse(timeline.originDate!) + Math.round(e.mediaTime * 1000));

    const vttFile = tmp.file('chapters.vtt');
    await download(app.url, rec, 'chapters', vttFile);
    const cues = parseVtt(fs.readFileSync(vttFile, 'utf8'));
    expect(cues.map((c) => c.text)).to.deep.equal(chapters.map((c) => c.replace(/&/g, '&amp;')));
    for (const [i, c] of cues.entries()) {
      expect(c.end, 'a cue ends after it starts').to.be.above(c.start);
      if (i > 0) expect(c.start, 'cues are monotonic').to.be.at.least(cues[i - 1]!.end - 1e-9);
    }
    expect(cues.at(-1)!.end).to.be.closeTo(timeline.durationSeconds, 0.01);

    // Speaking intervals against each performer's own track (on the same programme clock).
    const manifest = JSON.parse(fs.readFileSync(await (async () => {
      const f = tmp.file('files-manifest.json');
      await download(app.url, rec, 'manifest', f);
      return f;
    })(), 'utf8')) as { performers: { performerId: string; displayName: string }[] };
    const figures: string[] = [];
    for (const [name, freq] of [['Ann', 440], ['Bob', 660]] as const) {
      const pid = manifest.performers.find((p) => p.displayName === name)!.performerId;
      const file = tmp.file(`files-${name}.opus`);
      await download(app.url, rec, `track:${pid}`, file);
      const pcm = decodeToPcm(file);
      const intervals = timeline.speaking.find((s) => s.performerId === pid)?.intervals ?? [];
      expect(intervals.length, `${name} has speaking intervals`).to.be.above(3);
      let agree = 0;
      let total = 0;
      const step = 0.02;
      for (let t = 1; t + step < timeline.durationSeconds - 1; t += step) {
        const present = toneDb(pcm, freq, Math.round(t * SAMPLE_RATE), Math.round(step * SAMPLE_RATE)) > -40;
        const speaking = intervals.some(([a, b]) => t + step / 2 >= a && t + step / 2 < b);
        total++;
        if (present === speaking) agree++;
      }
      figures.push(`${name} ${((agree / total) * 100).toFixed(1)}% of ${total} windows, ${intervals.length} intervals`);
      if (agree / total <= 0.85 || process.env['DEBUG_SPEAKING']) {
        const edges: string[] = [];
        let prev = false;
        for (let t = 0; t < timeline.durationSeconds; t += 0.05) {
          const p = toneDb(pcm, freq, Math.round(t * SAMPLE_RATE), Math.round(0.05 * SAMPLE_RATE)) > -40;
          if (p !== prev) edges.push(`${p ? '+' : '-'}${t.toFixed(2)}`);
          prev = p;
        }
        console.log(`      ${name} tone edges: ${edges.join(' ')}\n      ${name} intervals: ${JSON.stringify(intervals)}`);
      }
      expect(agree / total, `${name}: speaking intervals match the tone's presence`).to.be.above(0.85);
    }
    console.log(`      speaking vs tone presence: ${figures.join('; ')}`);
  });

  it('bad input: oversized, HTML, too fast, unknown types and malformed payloads are refused with clear errors; nothing crashes', async () => {
    const stage = await createStage(app, 'Bad input');
    // Not on air: events belong to a broadcast.
    expect((await postEvent(app, stage.id, { type: 'chapter', title: 'Early' })).status).to.equal(409);
    await transition(app, stage.id, 'start');
    const other = await createStage(app, 'Other');
    const bodies: [unknown, number][] = [
      [{ type: 'explosion' }, 400],
      [{ type: 'chapter' }, 400],
      [{ type: 'chapter', title: '' }, 400],
      [{ type: 'chapter', title: 'x'.repeat(201) }, 400],
      [{ type: 'chapter', title: '<script>alert(1)</script>' }, 400],
      [{ type: 'chapter', title: 'ok', extra: 1 }, 400],
      [{ type: 'track', title: 'ok', artist: 42 }, 400],
      [[1, 2], 400],
      ['{not json', 400],
      [{ type: 'marker' }, 201],
    ];
    for (const [body, status] of bodies) {
      const res = await postEvent(app, stage.id, body);
      const json = (await res.json()) as { error?: { message: string } };
      expect(res.status, JSON.stringify(body)).to.equal(status);
      if (status !== 201) expect(json.error!.message, JSON.stringify(body)).to.be.a('string').and.not.equal('');
    }
    expect((await postEvent(app, stage.id, { type: 'marker' }, other.performerKey)).status, 'another stage\'s key').to.equal(401);
    expect((await postEvent(app, 'nosuchstage', { type: 'marker' })).status).to.equal(404);

    const listener = await connectClient(app.url, '/listen');
    const received: TimelineEvent[] = [];
    listener.socket.on('timelineEvent', ({ event }: { event: TimelineEvent }) => received.push(event));
    try {
      const ask = (event: string, payload: unknown) => listener.raw(event, [payload]) as Promise<Ack<unknown>>;
      expect(((await ask('comment', { text: 'hi', name: 'Lou' })) as { ok: boolean; error: { code: string } }).error.code, 'comment before subscribing').to.equal('NOT_JOINED');
      const sub = (await ask('subscribe', { stageId: stage.id })) as Ack<ListenResponse<'subscribe'>>;
      expect(sub.ok).to.equal(true);
      if (sub.ok) expect(sub.data.events.some((e) => e.type === 'marker')).to.equal(true);
      const refused: [unknown, string, RegExp][] = [
        [{ text: 'x'.repeat(501), name: 'Lou' }, 'BAD_REQUEST', /at most 500/],
        [{ text: 'nice <script>alert(1)</script>', name: 'Lou' }, 'BAD_REQUEST', /plain text/],
        [{ text: '<b>bold</b>', name: 'Lou' }, 'BAD_REQUEST', /plain text/],
        [{ text: 'hi', name: '<img src=x>' }, 'BAD_REQUEST', /plain text/],
        [{ text: '', name: 'Lou' }, 'BAD_REQUEST', /empty/],
        [{ text: 'hi' }, 'BAD_REQUEST', /name/],
        [{ text: 'hi', name: 'Lou', playingDate: 'yesterday' }, 'BAD_REQUEST', /playingDate/],
        [{ text: 'hi', name: 'Lou', extra: true }, 'BAD_REQUEST', /./],
        [null, 'BAD_REQUEST', /./],
        ['hi', 'BAD_REQUEST', /./],
        [[{ text: 'hi' }], 'BAD_REQUEST', /./],
      ];
      for (const [payload, code, message] of refused) {
        const r = (await ask('comment', payload)) as { ok: boolean; error: { code: string; message: string } };
        expect(r.ok, JSON.stringify(payload)).to.equal(false);
        expect(r.error.code, JSON.stringify(payload)).to.equal(code);
        expect(r.error.message, JSON.stringify(payload)).to.match(message);
      }
      expect(((await ask('explode', {})) as { error: { code: string } }).error.code, 'unknown event').to.equal('BAD_REQUEST');
      expect(((await ask('subscribe', { stageId: 'nosuchstage' })) as { error: { code: string } }).error.code).to.equal('NOT_FOUND');
      expect(((await ask('subscribe', { stageId: stage.id })) as { ok: boolean }).ok).to.equal(true);
      // Too fast: three at once are fine, the fourth is refused.
      const results = [];
      for (let i = 0; i < 4; i++) results.push((await ask('comment', { text: `comment ${i}`, name: 'Lou' })) as { ok: boolean; error?: { code: string; message: string } });
      expect(results.slice(0, 3).every((r) => r.ok)).to.equal(true);
      expect(results[3]!.ok).to.equal(false);
      expect(results[3]!.error!.code).to.equal('RATE_LIMITED');
      await sleep(300);
      expect(received.filter((e) => e.type === 'comment').map((e) => e.data.text)).to.deep.equal(['comment 0', 'comment 1', 'comment 2']);
      // Performers over Socket.IO: unknown types refused too.
      const performer = await connectClient(app.url);
      try {
        expect((await performer.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Pat' })).ok).to.equal(true);
        const bad = await performer.request('postEvent', { type: 'applause' });
        expect(bad.ok).to.equal(false);
        const good = await performer.request('postEvent', { type: 'chapter', title: 'From the stage' });
        expect(good.ok, JSON.stringify(good)).to.equal(true);
      } finally {
        performer.close();
      }
    } finally {
      listener.close();
    }
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { status: string };
    expect(health.status).to.equal('ok');
    await transition(app, stage.id, 'stop');
  });
});
