// `npm run bench [-- --quick]`: runs the benchmarks, prints a table, writes bench/results/<timestamp>.{json,md}.
// A benchmark reports; nothing fails because the machine is slow.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchArchive, type ArchiveBenchResult } from './archive.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const RESULTS = path.join(import.meta.dirname, 'results');
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  platform: `${os.type()} ${os.release()}`,
};

const started = new Date();
const archiveSeconds = quick ? 60 : 600;
const archive: ArchiveBenchResult[] = await benchArchive({ seconds: archiveSeconds, log });

const rows = archive.map((r) => [
  `Archive: stop → archived, ${Math.round(r.broadcastSeconds / 60)} min broadcast, ${r.store}`,
  `${(r.stopToArchivedMs / 1000).toFixed(2)} s`,
  '≤ 10 s',
  `${r.segments} segments, ${(r.bytes / 2 ** 20).toFixed(1)} MiB; finalize (VOD, .m4a, manifest) ${(r.finalizeMs / 1000).toFixed(2)} s`,
]);
const table = [
  '| Measure | Result | Target | Detail |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');

const stamp = started.toISOString().replace(/[:.]/g, '-');
fs.mkdirSync(RESULTS, { recursive: true });
const md = [
  `# Benchmark ${started.toISOString()}${quick ? ' (quick)' : ''}`,
  '',
  `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB, ${machine.platform}, Node ${machine.node}.`,
  '',
  table,
  '',
].join('\n');
fs.writeFileSync(path.join(RESULTS, `${stamp}.json`), `${JSON.stringify({ startedAt: started.toISOString(), quick, machine, archive }, null, 2)}\n`);
fs.writeFileSync(path.join(RESULTS, `${stamp}.md`), md);
process.stdout.write(`\n${md}\nWritten: bench/results/${stamp}.json and .md\n`);
