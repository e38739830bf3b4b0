import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { UsageError } from './errors.ts';
import { writePrivate } from './private.ts';
import { RUN_FILES } from './record/recorder.ts';

/**
 * Who owns a run directory: one live launcher. It holds an exclusive flock(2)
 * on `<run dir>/owner.lock`, taken with util-linux's `flock(1)` on a file
 * descriptor the launcher keeps open and hands to every process it starts (as
 * fd 3). The lock belongs to that open file, so the OS releases it only when
 * the launcher and every nats-server and role process it started are gone,
 * however they end: a second launcher cannot take over while anything of the
 * first still runs (a nats-server still writing the run log's store, say).
 * `<run dir>/owner.json` names the holder: its pid, its start time as Linux
 * counts it (/proc/<pid>/stat field 22, clock ticks since boot, which tells a
 * reused pid apart) and its command line.
 */
export const RunOwner = z
  .object({
    pid: z.number().int().min(1),
    /** /proc/<pid>/stat starttime: clock ticks after boot; null where /proc is not readable. */
    startTicks: z.number().int().min(0).nullable(),
    /** Wall-clock start of the claim (ISO 8601). */
    startedAt: z.string().max(40),
    command: z.string().max(2000),
  })
  .strict();
export type RunOwner = z.infer<typeof RunOwner>;

/** A run directory this launcher owns: `fd` holds the lock (pass it to every child as fd 3). */
export interface RunClaim {
  fd: number;
  owner: RunOwner;
  /** Close this launcher's hold; the lock is gone once every process that inherited it has exited too. */
  release(): void;
}

export const OWNER_LOCK = 'owner.lock';
export const OWNER_FILE = 'owner.json';
/** Seconds a new launcher waits for the processes of an owner that is gone to end (its reaper gives them 2 s). */
const ORPHAN_WAIT_S = 5;

/** /proc/<pid>/stat field 22 (starttime, clock ticks after boot), or null when the process is gone or /proc is not there. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may hold spaces: count fields after its closing one
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isInteger(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** Whether the process `o` names still runs (the same pid, started at the same tick). */
export function ownerAlive(o: Pick<RunOwner, 'pid' | 'startTicks'>): boolean {
  const now = processStartTicks(o.pid);
  return now !== null && (o.startTicks === null || now === o.startTicks);
}

function readOwner(runDir: string): RunOwner | undefined {
  try {
    const r = RunOwner.safeParse(JSON.parse(readFileSync(join(runDir, OWNER_FILE), 'utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** The sentence that names who holds `runDir`. */
function heldBy(runDir: string): string {
  const o = readOwner(runDir);
  if (!o) return `run directory ${runDir} is in use by another launcher (${join(runDir, OWNER_LOCK)} is locked)`;
  const who = `launcher pid ${o.pid} (started ${o.startedAt}: ${o.command.slice(0, 200)})`;
  return ownerAlive(o)
    ? `run directory ${runDir} is owned by ${who}; wait for it to end or stop it (kill ${o.pid})`
    : `run directory ${runDir} was owned by ${who}, which is gone, but processes it started still hold ${join(runDir, OWNER_LOCK)} (fuser -v ${join(runDir, OWNER_LOCK)}); they end within seconds of their launcher`;
}

/**
 * Take ownership of `runDir` (a directory that exists and is private) for this
 * process, or throw UsageError naming the owner. A run has one owner: a second
 * `train` or `train --resume` on it is refused at once while its launcher
 * lives; when the launcher is gone, up to ORPHAN_WAIT_S seconds are given to
 * the processes it started to end, and then the run is taken over.
 * Throws UsageError too when flock(1) (util-linux) is not installed.
 */
export function claimRun(runDir: string): RunClaim {
  const lockFile = join(runDir, OWNER_LOCK);
  const fd = openSync(lockFile, 'a', 0o600);
  const r = spawnSync('flock', ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], timeout: 10_000 });
  if (r.error) {
    closeSync(fd);
    throw new UsageError(
      `cannot lock ${lockFile}: flock (util-linux) did not run: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`,
    );
  }
  // the owner is gone but processes it started still hold the lock: they end within seconds of it (the reaper), so wait that long
  const holder = r.status === 1 ? readOwner(runDir) : undefined;
  const took =
    r.status === 1 && holder && !ownerAlive(holder)
      ? spawnSync('flock', ['--timeout', String(ORPHAN_WAIT_S), '--exclusive', '3'], {
          stdio: ['ignore', 'ignore', 'pipe', fd],
          timeout: (ORPHAN_WAIT_S + 5) * 1000,
        })
      : r;
  if (took.status !== 0) {
    closeSync(fd);
    if (took.status === 1) throw new UsageError(heldBy(runDir));
    throw new UsageError(
      `cannot lock ${lockFile}: flock exited ${took.status ?? took.signal}: ${String(took.stderr).trim().slice(0, 300)}`,
    );
  }
  const owner: RunOwner = {
    pid: process.pid,
    startTicks: processStartTicks(process.pid),
    startedAt: new Date().toISOString(),
    command: process.argv.slice(1).join(' ').slice(0, 2000),
  };
  writePrivate(join(runDir, OWNER_FILE), `${JSON.stringify(owner)}\n`);
  let open = true;
  return {
    fd,
    owner,
    release: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Whether `runDir` holds a run (its run.json). */
export function holdsRun(runDir: string): boolean {
  return existsSync(join(runDir, 'run.json'));
}

/** The names a run writes in its directory (besides nats-*.conf). */
const RUN_DIR_NAMES = new Set<string>([
  ...Object.values(RUN_FILES),
  'checkpoints',
  'credentials.json',
  'jetstream',
  'logs',
  'topology.json',
  OWNER_LOCK,
]);

/**
 * A fresh run's directory must be new, empty, or one a run made (its owner.json or run.json): never a directory of
 * other files, which the run would make mode 0700 and fill, and `--overwrite` would then empty.
 */
export function refuseForeignDir(runDir: string): void {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return; // not there yet (or not a directory: privateDir says so)
  }
  if (names.length === 0 || names.includes(OWNER_FILE) || names.includes('run.json')) return;
  // what a run writes there, left by one that ended before its run.json (or planted where a run will write: each of
  // these is written afresh, never through a link)
  const foreign = names.filter((n) => !RUN_DIR_NAMES.has(n) && !/^nats-[a-z0-9-]+\.conf$/.test(n));
  if (foreign.length === 0) return;
  const shown = foreign.sort().slice(0, 3).join(', ') + (foreign.length > 3 ? ', ...' : '');
  throw new UsageError(`--run-dir: ${runDir} holds files and no run (${shown}); give a new or empty directory`);
}

/** Empty an owned run directory for a new run (`train --overwrite`): everything but the lock this launcher holds. */
export function clearRunDir(runDir: string): void {
  for (const name of readdirSync(runDir)) if (name !== OWNER_LOCK) rmSync(join(runDir, name), { recursive: true, force: true });
}
