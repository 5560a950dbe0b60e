// The import-graph check (`npm run check:deps`, .dependency-cruiser.cjs) can fail: small fixture trees laid out like
// the project (services/, pipelines/, bench/, test/) are cruised with the npm script's own command line and the
// project's own config file, and each broken tree must exit non-zero naming the rule it breaks; a clean tree passes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

/** The `check:deps` script's arguments, its config file made absolute so that they work in a fixture tree. */
function checkDepsArgs(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const script = pkg.scripts['check:deps'];
  expect(script, 'package.json has a check:deps script').to.be.a('string');
  const [bin, ...args] = script!.trim().split(/\s+/);
  expect(bin).to.equal('depcruise');
  const i = args.indexOf('--config');
  expect(i, 'check:deps names its config file').to.be.greaterThan(-1);
  args[i + 1] = path.resolve(ROOT, args[i + 1]!);
  return args;
}

/** Runs the check in a temp dir holding `files` (path → source), and removes the dir. */
function cruise(files: Record<string, string>): { status: number | null; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-deps-'));
  try {
    for (const top of ['services', 'pipelines', 'bench', 'test']) fs.mkdirSync(path.join(dir, top));
    for (const [name, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), text);
    }
    const r = spawnSync(process.execPath, [CLI, ...checkDepsArgs()], { cwd: dir, encoding: 'utf8', timeout: 15_000 });
    if (r.error) throw r.error;
    return { status: r.status, output: r.stdout + r.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('check:deps (dependency-cruiser)', function () {
  this.timeout(20_000);

  it('fails on a two-file cycle of value imports', function () {
    const r = cruise({
      'services/a.ts': "import { b } from './b.ts';\nexport const a = (): number => b + 1;\n",
      'services/b.ts': "import { a } from './a.ts';\nexport const b = 1;\nexport const twice = (): number => a() * 2;\n",
    });
    expect(r.status, r.output).to.not.equal(0);
    expect(r.output).to.include('no-circular');
    expect(r.output).to.include('services/a.ts');
    expect(r.output).to.include('services/b.ts');
  });

  it('fails on a cycle made only of `import type`', function () {
    const r = cruise({
      'pipelines/a.ts': "import type { B } from './b.ts';\nexport interface A { b?: B }\n",
      'pipelines/b.ts': "import type { A } from './a.ts';\nexport interface B { a?: A }\n",
    });
    expect(r.status, r.output).to.not.equal(0);
    expect(r.output).to.include('no-circular');
    expect(r.output).to.include('pipelines/a.ts');
  });

  it('fails when pipelines/ imports services/, by value or by type', function () {
    const r = cruise({
      'services/y.ts': 'export interface Logger { info(msg: string): void }\nexport const quiet: Logger = { info: () => {} };\n',
      'pipelines/x.ts': "import { quiet } from '../services/y.ts';\nexport const log = quiet;\n",
      'pipelines/z.ts': "import type { Logger } from '../services/y.ts';\nexport const use = (l: Logger): void => l.info('z');\n",
    });
    expect(r.status, r.output).to.not.equal(0);
    expect(r.output).to.include('pipelines-not-to-services');
    expect(r.output).to.match(/pipelines\/x\.ts → services\/y\.ts/);
    expect(r.output).to.match(/pipelines\/z\.ts → services\/y\.ts/);
    expect(r.output).to.not.include('no-circular');
  });

  it('fails when services/ or pipelines/ import test/ or bench/', function () {
    const r = cruise({
      'test/support/helper.ts': 'export const helper = 1;\n',
      'bench/proc.ts': 'export const proc = 2;\n',
      'services/a.ts': "import { helper } from '../test/support/helper.ts';\nexport const a = helper;\n",
      'pipelines/b.ts': "import { proc } from '../bench/proc.ts';\nexport const b = proc;\n",
    });
    expect(r.status, r.output).to.not.equal(0);
    expect(r.output).to.match(/not-to-test-or-bench: services\/a\.ts → test\/support\/helper\.ts/);
    expect(r.output).to.match(/not-to-test-or-bench: pipelines\/b\.ts → bench\/proc\.ts/);
  });

  it('passes a clean tree (services → pipelines, type imports, tests and bench importing both)', function () {
    const r = cruise({
      'pipelines/args.ts': "import path from 'node:path';\nexport const args = (dir: string): string[] => ['-i', path.join(dir, 'in')];\n",
      'pipelines/mixer.ts': "import { args } from './args.ts';\nexport interface Mixer { args: string[] }\nexport const mixer = (dir: string): Mixer => ({ args: args(dir) });\n",
      'services/types.ts': 'export interface Stage { id: string }\n',
      'services/stages.ts':
        "import type { Stage } from './types.ts';\nimport { mixer, type Mixer } from '../pipelines/mixer.ts';\n" +
        'export const start = (s: Stage): Mixer => mixer(s.id);\n',
      'test/stages.test.ts': "import { start } from '../services/stages.ts';\nexport const t = start({ id: 'x' });\n",
      'bench/run.ts': "import { start } from '../services/stages.ts';\nimport { args } from '../pipelines/args.ts';\nexport const b = [start, args];\n",
    });
    expect(r.status, r.output).to.equal(0);
    expect(r.output).to.include('no dependency violations found');
    // It did look at the tree: all six files and their imports were cruised.
    const counts = /\((\d+) modules, (\d+) dependencies cruised\)/.exec(r.output);
    expect(counts, r.output).to.not.equal(null);
    expect(Number(counts![1])).to.be.at.least(6);
    expect(Number(counts![2])).to.be.at.least(7);
  });
});
