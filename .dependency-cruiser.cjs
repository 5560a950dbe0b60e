// dependency-cruiser rules for the project's own import graph, run by
// `npm run check:deps` (services pipelines bench test) and, against small
// fixture trees, by test/infra/deps.test.ts, which loads this same file.
//
// CommonJS (.cjs) because package.json has "type": "module".
// Paths in the rules are relative to the directory dependency-cruiser runs in
// (the project root), so `^pipelines/` means the top-level pipelines folder.
const path = require('node:path');

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'This module is part of an import cycle. Type-only imports count too ' +
        '(tsPreCompilationDeps): a cycle through `import type` is still a cycle. ' +
        'Break it by moving the shared part to a module both sides can import.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'pipelines-not-to-services',
      severity: 'error',
      comment:
        'pipelines/ must never depend on services/ (type-only imports included). ' +
        'Move what both need to a module outside services/, or pass it in.',
      from: { path: '^pipelines/' },
      to: { path: '^services/' },
    },
    {
      name: 'not-to-test-or-bench',
      severity: 'error',
      comment: 'Production code (services/, pipelines/) must not import from test/ or bench/.',
      from: { path: '^(services|pipelines)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-orphans',
      severity: 'error',
      comment:
        'This module neither imports nor is imported by anything cruised: likely ' +
        'dead code. Use it or remove it (or add an exception here if it is meant to stand alone).',
      from: {
        orphan: true,
        pathNot: [
          '(^|/)[.][^/]+[.](?:js|cjs|mjs|ts|cts|mts|json)$', // dot files
          '[.]d[.]ts$', // declaration files
        ],
      },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'This import cannot be resolved to a file on disk (a typo, a moved file, ' +
        'or a package missing from node_modules).',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6', 'cjs', 'tsd'],
    // Keep type-only dependencies (`import type`, `export type ... from`),
    // which the TypeScript compiler erases: they are part of the design graph.
    tsPreCompilationDeps: true,
    // The project's tsconfig, by absolute path so the config also works when
    // dependency-cruiser runs in another directory (the tests' fixture trees).
    tsConfig: { fileName: path.join(__dirname, 'tsconfig.json') },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      // The code imports './x.ts' (allowImportingTsExtensions); those resolve
      // as they are. These are for extensionless specifiers only.
      extensions: ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.d.ts', '.json'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    skipAnalysisNotInRules: true,
  },
};
