import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { cliPath } from '../src/index.ts';

export const quietLog = pino({ level: 'silent' });

export function tempDir(prefix = 'lockstep-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Pids `pgrep` finds with these arguments (none when nothing matches). */
export function pgrep(args: string[]): number[] {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Whether process `pid` still runs (a zombie has ended). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Poll `probe` every 100 ms until it gives a value; throws naming `what` after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Run the real CLI as a child process. */
export function cli(args: string[], opts: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [cliPath, ...args], {
    encoding: 'utf8',
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, ...opts.env },
  });
  const lines = r.stdout.trim().split('\n');
  let json: unknown;
  try {
    json = JSON.parse(lines.at(-1) ?? '');
  } catch {
    json = undefined;
  }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: json as Record<string, unknown> | undefined };
}
