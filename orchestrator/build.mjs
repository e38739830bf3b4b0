// Builds the CLI's bundle: orchestrator/dist/cli.js (the `lockstep` command and every role process) and
// orchestrator/dist/sim.js (the simulator's worker threads), with the code they share in one chunk beside them.
// Every workspace and every npm package is bundled except pino, which finds its transports' worker files next to
// its own sources. The files stay one directory below orchestrator/, like src/, so the paths the code builds from
// import.meta.url (../bin/lockstep.js, ../bin/sim-worker.js) resolve the same. bin/entry.js runs the bundle only
// while it is newer than every file it was built from.
//   node orchestrator/build.mjs             build (npm run build)
//   node orchestrator/build.mjs --if-stale  build only when dist is missing or older than its inputs
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { newestInput } from './bin/entry.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = join(here, 'dist');
const stamp = join(dist, 'cli.js');
if (process.argv.includes('--if-stale') && existsSync(stamp) && newestInput().mtimeMs <= statSync(stamp).mtimeMs) process.exit(0);

const began = new Date();
// build beside dist and swap it in, so a process starting meanwhile sees the old bundle or the new one
const tmp = join(here, `dist.tmp-${process.pid}`);
try {
  await build({
    absWorkingDir: here,
    entryPoints: { cli: 'src/cli.ts', sim: 'src/sim.ts' },
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['pino', '@node-rs/crc32'],
    // bundled CommonJS packages call require() for Node's modules
    banner: { js: "import { createRequire as __lockstepRequire } from 'node:module'; const require = __lockstepRequire(import.meta.url);" },
    sourcemap: true,
    logLevel: 'warning',
  });
  // The status page's files (src/ui/page and uPlot from node_modules) as one module beside the bundle: the image
  // carries only dist/*.js, not the sources nor node_modules.
  const require = createRequire(import.meta.url);
  const page = join(here, 'src', 'ui', 'page');
  const assets = {
    'index.html': readFileSync(join(page, 'index.html'), 'utf8'),
    'app.js': readFileSync(join(page, 'app.js'), 'utf8'),
    'style.css': readFileSync(join(page, 'style.css'), 'utf8'),
    'uplot.js': readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    'uplot.css': readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
  writeFileSync(join(tmp, 'ui-page.js'), `export default ${JSON.stringify(assets)};\n`);
  // Stamp the outputs with the time the build began: a source saved while it ran is then newer than the bundle.
  for (const f of readdirSync(tmp)) utimesSync(join(tmp, f), began, began);
  rmSync(dist, { recursive: true, force: true });
  renameSync(tmp, dist);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const bytes = readdirSync(dist)
  .filter((f) => f.endsWith('.js'))
  .reduce((n, f) => n + statSync(join(dist, f)).size, 0);
console.error(`lockstep: built orchestrator/dist (${(bytes / 1e6).toFixed(1)} MB of JavaScript) in ${Date.now() - began.getTime()} ms`);
