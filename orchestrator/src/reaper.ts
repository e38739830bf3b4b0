import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processStartTicks } from './owner.ts';

/** The reaper's script (plain JavaScript, beside the CLI's entry). */
export const reaperPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'reaper.js');

/**
 * A watchdog that ends every process a launcher started once the launcher is
 * gone, however it ended (an exit, an uncaught error, any signal, even
 * SIGKILL, which no exit hook survives). It runs bin/reaper.js in a session of
 * its own (a Ctrl-C or a closed terminal does not reach it), is told each
 * child's pid and start time (/proc/<pid>/stat, so a reused pid is never
 * killed), and when its stdin (a pipe from the launcher) closes it sends each
 * child still running SIGTERM, then SIGKILL after 2 s. Linux only (/proc).
 */
export class Reaper {
  private readonly child: ChildProcess;

  private constructor() {
    this.child = spawn(process.execPath, [reaperPath], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    this.child.stdin!.on('error', () => {}); // the reaper gone first: nothing more to tell it
    // neither the reaper nor the pipe to it keeps the launcher running
    this.child.unref();
    (this.child.stdin as unknown as { unref(): void }).unref();
  }

  static start(): Reaper {
    return new Reaper();
  }

  /** Tell the reaper about a process this launcher started. */
  track(c: ChildProcess): void {
    if (!c.pid) return;
    const ticks = processStartTicks(c.pid);
    if (ticks !== null) this.child.stdin!.write(`${c.pid} ${ticks}\n`);
  }

  /** The launcher stopped everything itself: let the reaper check and go. */
  close(): void {
    this.child.stdin!.end();
  }
}
