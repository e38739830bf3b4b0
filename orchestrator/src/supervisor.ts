import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { ProcessExited } from './errors.ts';

/** One restart the supervisor made: which process, why, and when (performance.now). */
export interface Restart {
  process: string;
  exit: string;
  at: number;
  restart: number;
}

export interface SupervisedOptions {
  name: string;
  maxRestarts: number;
  /** Start the process; `restart` is 0 the first time, then 1, 2, ... */
  start: (restart: number) => ChildProcess;
  /** An exit the run expects (a role's exit 0 at the end); not restarted. */
  expected?: (code: number | null, signal: NodeJS.Signals | null) => boolean;
  log: Logger;
  onStart?: (pid: number, restart: number) => void;
  onRestart?: (r: Restart) => void;
  /** The restarts are used up: the run cannot go on. */
  onGiveUp: (err: ProcessExited) => void;
  /** Called for every exit of the process: how it exited, the restart it gets (null: none), and whether the run expected it (its end, or the launcher stopped it). */
  onExit?: (e: { exit: string; restart: number | null; pid: number | undefined; expected: boolean }) => void;
  /** Where to look when it fails. */
  logFile?: string;
}

/**
 * Keeps one process of the run alive: when it exits unexpectedly it is
 * started again, up to `maxRestarts` times; after that the run gives up with
 * an error naming the process and how it exited.
 */
export class Supervised {
  restarts = 0;
  stopping = false;
  private child: ChildProcess;

  constructor(private readonly o: SupervisedOptions) {
    this.child = this.spawn();
  }

  get name(): string {
    return this.o.name;
  }

  get process(): ChildProcess {
    return this.child;
  }

  /** Send `sig` to the process running now; returns its pid, or undefined when none runs (it exited, or is being restarted). */
  signal(sig: NodeJS.Signals): number | undefined {
    const c = this.child;
    if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return undefined;
    return c.kill(sig) ? c.pid : undefined; // false: gone meanwhile
  }

  private spawn(): ChildProcess {
    const child = this.o.start(this.restarts);
    if (child.pid) this.o.onStart?.(child.pid, this.restarts);
    // 'close', not 'exit': by then its stdout is read to the end, so a last line it printed is seen first
    child.once('close', (code, signal) => this.exited(child, code, signal));
    return child;
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null) {
    if (child !== this.child) return;
    const exit = signal ?? `code ${code}`;
    const expected = this.o.expected?.(code, signal) ?? false;
    const restarting = !this.stopping && !expected && this.restarts < this.o.maxRestarts;
    this.o.onExit?.({ exit, restart: restarting ? this.restarts + 1 : null, pid: child.pid, expected: expected || this.stopping });
    if (this.stopping || expected) return;
    if (this.restarts >= this.o.maxRestarts) {
      const where = this.o.logFile ? `; its log: ${this.o.logFile}` : '';
      this.o.onGiveUp(
        new ProcessExited(
          `${this.o.name} exited (${exit}) during the run${this.o.maxRestarts > 0 ? ` after ${this.restarts} restarts` : ''}${where}`,
        ),
      );
      return;
    }
    this.restarts++;
    this.o.log.warn(
      { process: this.o.name, exit, restart: this.restarts, of: this.o.maxRestarts },
      'process exited during the run; restarting it',
    );
    this.o.onRestart?.({ process: this.o.name, exit, at: performance.now(), restart: this.restarts });
    this.child = this.spawn();
  }
}
