import { z } from 'zod';
import { describeIssues, InvalidInput } from '@lockstep/topology';

/** A Docker image reference (`lockstep:dev`, `node:20-bookworm-slim`). */
export const ImageRef = z
  .string()
  .max(255)
  .regex(/^[a-z0-9][a-z0-9._/:@-]*$/, 'must be an image reference such as lockstep:dev');

/** The images a cluster runs, as tagged by default: the role image and Debian's nats-server on the Node base. */
export const DEFAULT_IMAGE = 'lockstep:dev';
export const DEFAULT_NATS_IMAGE = 'lockstep-nats:2.9.10';
/** The Node runtime base made from this machine's node when no `base` is given. */
export const LOCAL_NODE_BASE = 'lockstep-node:20';

/**
 * The image tags from the environment, so that several people (or test runs) on one Docker engine can each build and
 * run their own: LOCKSTEP_IMAGE (the role image), LOCKSTEP_NATS_IMAGE (the nats-server image), LOCKSTEP_NODE_IMAGE
 * (the Node base made from this machine's node). Unset or empty: the defaults.
 */
export const ImageEnv = z.object({
  LOCKSTEP_IMAGE: ImageRef.default(DEFAULT_IMAGE),
  LOCKSTEP_NATS_IMAGE: ImageRef.default(DEFAULT_NATS_IMAGE),
  LOCKSTEP_NODE_IMAGE: ImageRef.default(LOCAL_NODE_BASE),
});

/** The image tags to use when none is given: the environment's (ImageEnv), else the defaults. Throws InvalidInput naming a bad variable. */
export function imageDefaults(env: NodeJS.ProcessEnv = process.env): { image: string; natsImage: string; nodeImage: string } {
  const pick = (k: keyof z.input<typeof ImageEnv>) => (env[k] === '' ? undefined : env[k]);
  const r = ImageEnv.safeParse({
    LOCKSTEP_IMAGE: pick('LOCKSTEP_IMAGE'),
    LOCKSTEP_NATS_IMAGE: pick('LOCKSTEP_NATS_IMAGE'),
    LOCKSTEP_NODE_IMAGE: pick('LOCKSTEP_NODE_IMAGE'),
  });
  if (!r.success) throw new InvalidInput('environment', describeIssues(r.error));
  return { image: r.data.LOCKSTEP_IMAGE, natsImage: r.data.LOCKSTEP_NATS_IMAGE, nodeImage: r.data.LOCKSTEP_NODE_IMAGE };
}
