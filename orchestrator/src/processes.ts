import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** The CLI entry that every role process runs. */
export const cliPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'lockstep.js');

export interface Managed {
  name: string;
  log: string;
  process: ChildProcess;
  /** Set once the launcher itself asks the process to stop. */
  stopping: boolean;
}

/**
 * Start `lockstep <role> ...` as its own OS process. Its structured logs go to
 * `<logDir>/<name>.log`; its stdin is a pipe whose end tells it the launcher
 * is gone, so no process outlives the launcher. `holdFd` (the run directory's
 * lock, see owner.ts) is handed to it as fd 3, so the run stays owned until
 * it has exited too. With `onEvent`, the process writes its run events
 * (topology's RunEvent, one JSON line each) on fd 4 (LOCKSTEP_EVENTS_FD), a
 * pipe whose lines go to `onEvent`.
 */
export function spawnRole(
  name: string,
  args: string[],
  logDir: string,
  stdout: 'pipe' | 'log' = 'log',
  env: Record<string, string> = {},
  holdFd?: number,
  onEvent?: (line: string) => void,
): Managed {
  const log = join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  // LOCKSTEP_NODE_ARGS passes flags to every role process's node (e.g. --cpu-prof).
  const nodeArgs = (process.env.LOCKSTEP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, cliPath, ...args], {
    stdio: ['pipe', stdout === 'pipe' ? 'pipe' : fd, fd, holdFd ?? 'ignore', onEvent ? 'pipe' : 'ignore'],
    env: { ...process.env, ...env, LOCKSTEP_PARENT_WATCH: '1', ...(onEvent ? { LOCKSTEP_EVENTS_FD: '4' } : {}) },
  });
  closeSync(fd); // the child has its own copy
  if (onEvent) createInterface({ input: child.stdio[4] as Readable }).on('line', onEvent);
  return { name, log, process: child, stopping: false };
}

/** Stop processes: SIGTERM, then SIGKILL after `graceMs`. Resolves when all have exited. */
export async function stopAll(procs: { process: ChildProcess; stopping?: boolean }[], graceMs = 3000): Promise<void> {
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          p.stopping = true;
          const c = p.process;
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
          c.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}
