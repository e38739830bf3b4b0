// Loads one of the CLI's entry modules: the built bundle (orchestrator/dist/<name>.js, `npm run build`) when it
// exists and is not older than anything it was built from, else the TypeScript sources through tsx.
// A bundle older than the sources is never run: that falls back to tsx with one warning line on stderr.
// The first process decides and puts its choice in LOCKSTEP_ENTRY, which the role processes it spawns and its
// worker processes inherit, so they load the same code without looking again. LOCKSTEP_ENTRY=src forces the
// sources, LOCKSTEP_ENTRY=dist the bundle.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const orchestrator = fileURLToPath(new URL('..', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
/** What the bundle is built from: every workspace's sources, the build script, and the installed packages. */
export const bundleInputs = [
  'topology/src',
  'actors/src',
  'infra/src',
  'orchestrator/src',
  'orchestrator/build.mjs',
  'node_modules/.package-lock.json',
];

/** The newest input (path and mtime in ms); only files, walked recursively. */
export function newestInput() {
  let newest = { path: '', mtimeMs: 0 };
  const consider = (path) => {
    const m = statSync(path).mtimeMs;
    if (m > newest.mtimeMs) newest = { path, mtimeMs: m };
  };
  for (const rel of bundleInputs) {
    const path = root + rel;
    if (!existsSync(path)) continue;
    if (!statSync(path).isDirectory()) consider(path);
    else
      for (const e of readdirSync(path, { recursive: true, withFileTypes: true }))
        if (e.isFile()) consider(`${e.parentPath ?? e.path}/${e.name}`);
  }
  return newest;
}

function choose(name) {
  const bundle = `${orchestrator}dist/${name}.js`;
  if (!existsSync(bundle)) return 'src';
  const newest = newestInput();
  if (newest.mtimeMs > statSync(bundle).mtimeMs) {
    process.stderr.write(
      `lockstep: orchestrator/dist is older than ${newest.path.slice(root.length)}; running the sources through tsx (npm run build rebuilds it)\n`,
    );
    return 'src';
  }
  return 'dist';
}

/** Import entry `name` (`cli` or `sim`) from the bundle or from orchestrator/src/<name>.ts. */
export async function load(name) {
  let from = process.env.LOCKSTEP_ENTRY;
  if (from !== undefined && from !== '' && from !== 'src' && from !== 'dist') {
    // in the style of every other bad variable (errors.ts cannot be loaded before this choice)
    process.stderr.write(`lockstep: UsageError: LOCKSTEP_ENTRY: must be src or dist (or unset); got ${JSON.stringify(from)}\n`);
    process.exit(2);
  }
  if (from !== 'src' && from !== 'dist') from = choose(name);
  process.env.LOCKSTEP_ENTRY = from;
  if (from === 'dist') return import(`../dist/${name}.js`);
  const { register } = await import('tsx/esm/api');
  register();
  return import(`../src/${name}.ts`);
}
