/* DESIGN.md's arrows: only packages/proxy composes the others; the leaf packages meet through
 * types from config (discovery) or through proxy, never by importing each other. */
const leaf = ['balancer', 'ledger', 'discovery', 'upstream'];
const pkg = (name) => `^packages/${name}/|@smtp-lb/${name}`;

module.exports = {
  forbidden: [
    ...leaf.map((from) => ({
      name: `${from}-is-a-leaf`,
      comment: `${from} may import only config (discovery) and its own files; its tests may use testkit`,
      severity: 'error',
      from: { path: `^packages/${from}/src/` },
      to: {
        path: [...leaf.filter((l) => l !== from), 'proxy', 'testkit'].map(pkg).join('|'),
      },
    })),
    {
      name: 'only-discovery-uses-config',
      comment: 'balancer, ledger and upstream are standalone; their option types are their own',
      severity: 'error',
      from: { path: '^packages/(balancer|ledger|upstream)/src/' },
      to: { path: pkg('config') },
    },
    {
      name: 'config-imports-nothing-of-ours',
      severity: 'error',
      from: { path: '^packages/config/src/' },
      to: { path: '^packages/(?!config/)|@smtp-lb/(?!config)' },
    },
    {
      name: 'testkit-only-in-tests',
      comment: 'testkit starts real servers for tests; production code never loads it',
      severity: 'error',
      from: { path: '^packages/(?!testkit/)[^/]+/src/' },
      to: { path: pkg('testkit') },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.base.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
