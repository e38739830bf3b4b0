import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { UsageError } from './errors.ts';

/** The largest topology, scenario or run.json file read (bytes): 1 MiB. */
export const MAX_INPUT_FILE_BYTES = 1024 * 1024;

/**
 * Read a user's input file as UTF-8, at most `maxBytes` bytes of it: a file that is not there, not a
 * regular file, or larger is a UsageError (exit 2) naming `what` (the flag or file kind), the path and
 * the reason. Only the allowed bytes are ever read, so a huge file costs nothing.
 */
export function readInputFile(file: string, what: string, maxBytes = MAX_INPUT_FILE_BYTES): string {
  let fd: number;
  try {
    // O_NONBLOCK: a named pipe opens at once (and is refused below) instead of waiting for a writer for ever
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new UsageError(`${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${what}: ${file} is not a regular file`);
    if (st.size > maxBytes) throw new UsageError(`${what}: ${file} is ${st.size} bytes; at most ${maxBytes} are read`);
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < st.size) {
      const got = readSync(fd, buf, n, st.size - n, n);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n).toString('utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  } finally {
    closeSync(fd);
  }
}
