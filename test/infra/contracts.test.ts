// The shared contracts bind the pages: a page that names a request or a server event wrongly, sends a wrong payload or
// misuses an answer fails the typecheck. Small pages written like services/pages/performer/main.ts (a
// ContractSocket<StageContract> and requester<StageContract>) are type-checked in-process with the TypeScript compiler
// API and the project's tsconfig options: the correct one has no error, each broken one an error on the broken line.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * A page using the /stage contract. `{{JOIN}}`, `{{ON}}` and `{{USE}}` are the lines a broken variant replaces. The
 * page sits one folder below the project root, so its imports are those of a page's module path-wise.
 */
const PAGE = `import { io } from 'socket.io-client';
import { requester, type ContractSocket } from '../services/pages/client.ts';
import type { StageContract } from '../services/shared/stage.ts';

const socket: ContractSocket<StageContract> = io('/stage', { transports: ['websocket'], reconnection: false });
const request = requester<StageContract>(() => socket, 10_000);

export async function join(stageId: string, key: string): Promise<string | null> {
  const res = {{JOIN}}
  if (!res.ok) return res.error.code;
  {{ON}}
  {{USE}}
  return performerId;
}
`;

const CORRECT = {
  JOIN: "await request('join', { stageId, key, displayName: 'Ann' });",
  ON: "socket.on('performerJoined', ({ performer }) => console.log(performer.displayName));",
  USE: 'const performerId: string = res.data.performerId;',
};

interface Variant {
  /** What the page gets wrong. */
  what: string;
  line: keyof typeof CORRECT;
  text: string;
  /** TypeScript diagnostic codes that say it (one of them). */
  codes: number[];
  /** A word the message must contain (the offending name). */
  mentions: string;
}

const BROKEN: Variant[] = [
  { what: 'a request name the contract does not have', line: 'JOIN', text: "await request('joinn', { stageId, key, displayName: 'Ann' });", codes: [2345], mentions: 'joinn' },
  { what: 'a payload field of the wrong type', line: 'JOIN', text: "await request('join', { stageId: 1, key, displayName: 'Ann' });", codes: [2322], mentions: 'number' },
  { what: 'a payload missing a required field', line: 'JOIN', text: "await request('join', { stageId, displayName: 'Ann' });", codes: [2345], mentions: 'key' },
  { what: 'a server event name the contract does not have', line: 'ON', text: "socket.on('performerJoind', ({ performer }) => console.log(performer.displayName));", codes: [2345, 2769], mentions: 'performerJoind' },
  { what: "a field another event's payload has", line: 'ON', text: "socket.on('performerJoined', ({ performerId }) => console.log(performerId));", codes: [2339], mentions: 'performerId' },
  { what: 'a response field the answer does not have', line: 'USE', text: 'const performerId: string = res.data.producerId;', codes: [2339], mentions: 'producerId' },
  { what: 'a response field used as the wrong type', line: 'USE', text: 'const performerId: string = res.data.resumed;', codes: [2322], mentions: 'boolean' },
];

function page(replace: Partial<typeof CORRECT> = {}): string {
  let text = PAGE;
  for (const [k, v] of Object.entries({ ...CORRECT, ...replace })) text = text.replace(`{{${k}}}`, v);
  return text;
}

/** The 1-based line of the page on which a placeholder sits. */
function lineOf(placeholder: keyof typeof CORRECT): number {
  return PAGE.split('\n').findIndex((l) => l.includes(`{{${placeholder}}}`)) + 1;
}

interface Found {
  line: number;
  code: number;
  message: string;
}

describe('contracts: the typecheck catches a page that breaks the /stage contract', function () {
  this.timeout(30_000);
  // Outside the folders tsconfig includes (services, pipelines, test, bench): a project-wide `tsc --noEmit` run at the
  // same time never sees these deliberately broken files.
  const dir = path.join(ROOT, `fixtures-tmp-${crypto.randomBytes(4).toString('hex')}`);
  const diagnostics = new Map<string, Found[]>();
  const files = new Map<string, string>();

  before(function () {
    fs.mkdirSync(dir);
    files.set('correct', path.join(dir, 'correct.ts'));
    BROKEN.forEach((_, i) => files.set(`broken-${i}`, path.join(dir, `broken-${i}.ts`)));
    fs.writeFileSync(files.get('correct')!, page());
    BROKEN.forEach((v, i) => fs.writeFileSync(files.get(`broken-${i}`)!, page({ [v.line]: v.text })));

    const configFile = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), (f) => ts.sys.readFile(f));
    expect(configFile.error, 'tsconfig.json reads').to.equal(undefined);
    const config = ts.parseJsonConfigFileContent(configFile.config, ts.sys, ROOT);
    expect(config.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), 'tsconfig.json parses').to.deep.equal([]);
    // One program for every page: the contracts and their dependencies are checked once.
    const program = ts.createProgram({ rootNames: [...files.values()], options: config.options });
    for (const [name, file] of files) {
      const source = program.getSourceFile(file)!;
      diagnostics.set(name, ts.getPreEmitDiagnostics(program, source).map((d) => ({
        line: d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0,
        code: d.code,
        message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
      })));
    }
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a page using the contract correctly type-checks with no error', function () {
    expect(diagnostics.get('correct')).to.deep.equal([]);
  });

  BROKEN.forEach((v, i) => {
    it(`${v.what} (${v.line === 'JOIN' ? 'request' : v.line === 'ON' ? 'socket.on' : 'the answer'}: \`${v.text}\`) fails on that line`, function () {
      const found = diagnostics.get(`broken-${i}`)!.sort((a, b) => a.line - b.line);
      const expectedLine = lineOf(v.line);
      const summary = JSON.stringify(found, null, 1);
      // The first error is the broken line's (later lines may fail in consequence: what the answer's type became).
      expect(found.length, `errors: ${summary}`).to.be.at.least(1);
      expect(found[0]!.line, `the first error's line: ${summary}`).to.equal(expectedLine);
      expect(v.codes, `the first error's code: ${summary}`).to.include(found[0]!.code);
      expect(found[0]!.message, summary).to.include(v.mentions);
    });
  });
});
