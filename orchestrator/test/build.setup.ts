import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Tests import the sources, but the CLI they spawn runs the bundle: build it first when it is missing or stale. */
export default function setup(): void {
  execFileSync(process.execPath, [fileURLToPath(new URL('../build.mjs', import.meta.url)), '--if-stale'], { stdio: 'inherit' });
}
