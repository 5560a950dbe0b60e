// Child process for the write journal's crash test (test/unit/journal.test.ts): opens a WriteBehind with a journal
// on a database that refuses every connection, queues `count` operations, prints "ready", then goes on queueing
// more as fast as it can until it is killed (SIGKILL). Usage: journal-crash-child.ts <journalPath> <count>
import { WriteBehind } from '../../services/db/writeBehind.ts';
import { createLogger } from '../../services/logger.ts';

const [journalPath, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!journalPath || !Number.isInteger(count)) throw new Error('usage: journal-crash-child.ts <journalPath> <count>');

const down = {
  query: async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  },
};
const w = await WriteBehind.open({
  db: down,
  log: createLogger('error', { silent: true }),
  journalPath,
  retryBaseMs: 5,
  retryMaxMs: 20,
  executors: { row: (db, d: { i: number; at: string }) => db.query('insert into t (i, at) values ($1, $2) on conflict do nothing', [d.i, d.at]) },
});
let i = 0;
while (i < count) void w.write('row', { i: ++i, at: new Date().toISOString() });
process.stdout.write('ready\n');
const more = (): void => {
  for (let k = 0; k < 10; k++) void w.write('row', { i: ++i, at: new Date().toISOString() });
  setImmediate(more);
};
more();
