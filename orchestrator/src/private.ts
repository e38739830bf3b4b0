import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from './errors.ts';

/**
 * Files only their owner may read: lockstep writes every file that holds a
 * password (nats-server configs, credentials.json, a compose file and its
 * configs) with mode 0600, in a directory of mode 0700 that the user running
 * lockstep owns. Other users of the machine are not trusted; its owner and
 * root are.
 */

/**
 * Write `text` to `file`, mode 0600: into a new file of the directory (never
 * through a symbolic link, never into a file someone else made), then renamed
 * over `file`, so whatever was at `file` (a file of another mode or owner, a
 * link to elsewhere) is replaced, not written through.
 */
export function writePrivate(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeFileSync(fd, text);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * `mkdir -p`: make `dir` and its missing parents, one at a time, from the nearest one that is there. Not
 * `mkdirSync(dir, { recursive: true })`, which spins for ever where a parent is there but mkdir in it says ENOENT
 * (under /proc: `LOCKSTEP_RUNS_DIR=/proc/x` hung the launcher at 100% CPU); here that ENOENT is thrown.
 */
export function makeDirs(dir: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      lstatSync(d);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(d) === d) throw err;
      missing.unshift(d);
    }
  }
  for (const d of missing) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (missing.length === 0 && !statSync(dir).isDirectory())
    throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST' });
}

/**
 * Make `dir` (and any missing parents) and give it mode 0700 (also when it was
 * there before). Throws UsageError when `dir` is not a directory, is a symbolic
 * link, or belongs to another user (who could read the run's passwords or
 * change its configs before a server reads them).
 */
export function privateDir(dir: string): void {
  try {
    makeDirs(dir, 0o700);
  } catch (err) {
    throw new UsageError(`run directory ${dir}: cannot be made (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const st = lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw new UsageError(
      `run directory ${dir}: is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}; give a directory of your own`,
    );
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new UsageError(
      `run directory ${dir}: belongs to user ${st.uid}, not to you (${uid}); another user could read the run's passwords or change its configs: give a directory you own`,
    );
  chmodSync(dir, 0o700);
}
