import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { presetNames } from '@lockstep/topology';

/**
 * What the user commands' common flags share: one schema for `--steps` (train, reference, compose word a bad value
 * the same way), the `LOCKSTEP_*` environment variable each common flag also reads (a flag given wins), and the
 * version `--version` prints.
 */
export const StepsFlag = z.coerce
  .number({ error: 'must be a number' })
  // the bounds first: a number past 2^53 (not a safe integer) is told it is too large, not that it is not whole
  .min(1, 'must be >= 1')
  .max(1_000_000, 'must be <= 1000000')
  .int('must be a whole number');

/** `--topology` (or LOCKSTEP_TOPOLOGY): a preset or a file; an empty one is said in these words, not zod's. */
export const TopologyFlag = z.string().min(1, `must name a preset (${presetNames.join(', ')}) or a topology file`);

/** The environment variable of a common flag: topology -> LOCKSTEP_TOPOLOGY, logLevel -> LOCKSTEP_LOG_LEVEL. */
export const envOf = (flag: 'topology' | 'steps' | 'model' | 'logLevel' | 'runDir' | 'natsServer'): string =>
  `LOCKSTEP_${flag.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** The orchestrator package's version (its package.json, one directory above src/ and dist/). */
export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as unknown;
    return z.object({ version: z.string().max(100) }).parse(pkg).version;
  } catch {
    return 'unknown';
  }
}
