import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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
 * Make `dir` (and any missing parents) and give it mode 0700 (also when it was
 * there before). Throws UsageError when `dir` is not a directory, is a symbolic
 * link, or belongs to another user (who could read the run's passwords or
 * change its configs before a server reads them).
 */
export function privateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
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
