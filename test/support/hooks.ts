// Root hooks for the whole suite. A test that fails half-way must not leave its polling behind (mocha runs with
// `exit: false`, so anything left running would hold the run open); and whatever is still alive once every test has
// run is listed, so that a run that does not end says why.
import { PlaylistWatcher } from './hls.ts';

export const mochaHooks = {
  afterEach(): void {
    for (const w of [...PlaylistWatcher.running]) w.stop();
  },
  async afterAll(): Promise<void> {
    await new Promise((r) => setTimeout(r, 500));
    // Timers of this hook and mocha's own are not counted; sockets of a test run, child processes and watchers are.
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'TTYWrap');
    if (left.length > 0) process.stderr.write(`\n[hooks] still alive after every test: ${JSON.stringify(left)}\n`);
  },
};
