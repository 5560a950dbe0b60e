// The mediasoup worker pool when a worker dies of SIGTERM as the service shuts down (systemd signals every process of
// the service at once): whichever the pool hears first, the worker's death or the shutdown, the worker is let go and
// logged so, never replaced. Real mediasoup workers; the pool's log read from a winston stream.
import fs from 'node:fs';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import winston from 'winston';
import { WorkerPool } from '../../services/sfu/workerPool.ts';
import { eventually } from '../support/browser.ts';

function memoryLogger(): { log: winston.Logger; messages: string[] } {
  const messages: string[] = [];
  const stream = new Writable({
    objectMode: true,
    write(info: { message: string }, _enc, cb) {
      messages.push(info.message);
      cb();
    },
  });
  return { log: winston.createLogger({ level: 'info', transports: [new winston.transports.Stream({ stream })] }), messages };
}

describe('mediasoup worker pool: a worker that dies of the service\'s own signal', function () {
  this.timeout(20_000);
  const pools: WorkerPool[] = [];
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.closeAndWait();
  });

  for (const order of ['close', 'drain'] as const) {
    it(`dies of SIGTERM, then the pool is told to ${order} before the respawn delay ends: let go, logged, not replaced`, async () => {
      const { log, messages } = memoryLogger();
      const pool = await WorkerPool.create({ numWorkers: 1, logLevel: 'warn', rtcMinPort: 40000, rtcMaxPort: 40999 }, log);
      pools.push(pool);
      const worker = pool.workers[0]!.worker;
      const died = new Promise<void>((r) => worker.once('died', () => r()));
      process.kill(worker.pid, 'SIGTERM');
      await died;
      // Within the pool's wait for the service's own signal handler (1 s): nothing logged yet, no replacement.
      expect(messages.filter((m) => /exited|died/.test(m)), 'nothing decided yet').to.deep.equal([]);
      if (order === 'close') pool.close();
      else pool.drain();
      expect(messages, 'logged at once').to.include('mediasoup worker exited with the service');
      await new Promise((r) => setTimeout(r, 1500));
      expect(messages.filter((m) => m === 'mediasoup worker started'), 'no worker after the first').to.have.length(1);
      expect(messages).to.not.include('mediasoup worker died; replacing it');
      expect(messages.filter((m) => m === 'mediasoup worker exited with the service'), 'logged once').to.have.length(1);
    });
  }

  it('dies of SIGTERM and the pool is closed before it hears of the death: let go, logged, not replaced', async () => {
    const { log, messages } = memoryLogger();
    const pool = await WorkerPool.create({ numWorkers: 1, logLevel: 'warn', rtcMinPort: 42000, rtcMaxPort: 42999 }, log);
    pools.push(pool);
    const pid = pool.workers[0]!.worker.pid;
    // Killed and waited for without yielding to the event loop, so the pool cannot hear of the death before close():
    // /proc shows a zombie (exited, not reaped).
    process.kill(pid, 'SIGKILL');
    const until = Date.now() + 5000;
    while (fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z' && Date.now() < until);
    pool.close();
    expect(messages, 'logged at close').to.include('mediasoup worker exited with the service');
    await new Promise((r) => setTimeout(r, 1500));
    expect(messages.filter((m) => m === 'mediasoup worker started'), 'no worker after the first').to.have.length(1);
    expect(messages).to.not.include('mediasoup worker died; replacing it');
  });

  it('dies of SIGTERM with no shutdown following: replaced after the wait', async () => {
    const { log, messages } = memoryLogger();
    const pool = await WorkerPool.create({ numWorkers: 1, logLevel: 'warn', rtcMinPort: 41000, rtcMaxPort: 41999 }, log);
    pools.push(pool);
    process.kill(pool.workers[0]!.worker.pid, 'SIGTERM');
    await eventually(async () => messages.filter((m) => m === 'mediasoup worker started').length, (n) => n === 2, 5000, 50);
    expect(messages).to.include('mediasoup worker died; replacing it');
  });
});
