import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, writeFileSync } from 'node:fs';

/**
 * Files only their owner may read: lockstep writes every file that holds a
 * password (nats-server configs, credentials.json, a compose file and its
 * configs) with mode 0600, in a directory of mode 0700. Other users of the
 * machine are not trusted; its owner and root are.
 */

/** Write `text` to `file`, mode 0600 (also when the file was there before, with another mode). */
export function writePrivate(file: string, text: string): void {
  // created 0600; a file that was there is emptied here, and made 0600 before the secret goes in
  const fd = openSync(file, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeFileSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Make `dir` (and any missing parents) and give it mode 0700 (also when it was there before). */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}
