// A child process for test/broadcast/lifecycle.test.ts: starts an app (dirs from the environment), puts a stage on
// air with a synthetic performer, closes the app with a grace, and prints what is still alive of everything it made.
// It never calls process.exit: the parent checks that it ends by itself (nothing keeps its event loop going).
import { ResourceTracker } from './handles.ts';

const tracker = new ResourceTracker();
const { startTestApp } = await import('./app.ts');
const { SyntheticPerformer } = await import('./synthetic.ts');

const env = JSON.parse(process.env['APP_ENV'] ?? '{}') as Record<string, string>;
const app = await startTestApp(env);
const created = await app.stages.create('Closed with the app');
const stage = await app.registry.open(created.id);
const sender = await SyntheticPerformer.start(stage.router, 660);
await app.onAir.start(stage.id);
const broadcast = stage.broadcast!;
await broadcast.mixer.attach('sender', sender.producer, 'Sender');
for (let i = 0; i < 100 && (await app.archiver.repo.objects(broadcast.id, 'segment')).length < 3; i++) await new Promise((r) => setTimeout(r, 200));
const mixPid = broadcast.mixer.ffmpeg.pid;
await app.close({ graceMs: 20_000 });
await sender.stop();
await new Promise((r) => setTimeout(r, 1_000));
// This script's own wait is not the app's.
const left = tracker.alive((r) => /app-close-child\.ts/.test(r.stack)).map((r) => ({ type: r.type, stack: r.stack }));
tracker.stop();
process.stdout.write(`${JSON.stringify({ stageId: created.id, broadcastId: broadcast.id, mixPid, stageClosed: stage.closed, left })}\n`);
