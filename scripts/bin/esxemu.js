#!/usr/bin/env node
// The esxemu command: a stable, committed entry that npm links at install time; the CLI itself
// is compiled TypeScript in ../dist (built by `npm run build`, which `npm start` and `npm test` run).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('esxemu: NOT_BUILT: the CLI is not built yet; run `npm run build` in the esxemu checkout first\n');
  process.exit(1);
}
await import(main.href);
