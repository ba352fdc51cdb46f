#!/usr/bin/env node
// A native-looking `solc` in front of solcjs, so forge (and ezkl) can compile offline.
//
// forge only needs two things from a solc binary: `--version` printing a native version line,
// and `--standard-json` reading the input from stdin and writing the output JSON to stdout.
// The solcjs CLI cannot do the latter (it rejects forge's flags and prints a banner first),
// so we call the compiler's JS API directly and resolve imports against --base-path and
// every --include-path / --allow-paths entry forge passes.
//
// Which solcjs release is used comes from SOLCJS_MODULE (default: the `solc` npm package).
'use strict';
const fs = require('fs');
const path = require('path');

const moduleName = process.env.SOLCJS_MODULE || 'solc';
const solc = require(require.resolve(moduleName, { paths: [path.join(__dirname, '..')] }));

const args = process.argv.slice(2);

if (args.includes('--version') || args.includes('-v')) {
  // solc.version() looks like "0.8.28+commit.7893614a.Emscripten.clang"
  const v = solc.version().replace(/\.Emscripten\.clang$/, '');
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${v}.Linux.g++\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('tools/solc.js: only --version and --standard-json are supported\n');
  process.exit(1);
}

const roots = [];
for (let i = 0; i < args.length; i++) {
  const flag = args[i];
  if (flag === '--base-path' || flag === '--include-path' || flag === '--allow-paths') {
    for (const p of String(args[i + 1] || '').split(',')) if (p) roots.push(p);
    i++;
  }
}
roots.push(process.cwd());

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath)
    ? [importPath]
    : roots.map((root) => path.resolve(root, importPath));
  for (const candidate of candidates) {
    try {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    } catch (_) {
      /* try the next root */
    }
  }
  return { error: `File not found: ${importPath} (searched ${roots.join(', ')})` };
}

const input = fs.readFileSync(0, 'utf8');
process.stdout.write(solc.compile(input, { import: findImports }));
