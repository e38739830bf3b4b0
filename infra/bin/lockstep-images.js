#!/usr/bin/env node
// lockstep-images: build the images a lockstep cluster runs, without a registry (the package's buildImages()).
//   npx lockstep-images [--image lockstep:dev] [--nats-image lockstep-nats:2.9.10] [--node-image lockstep-node:20] [--base node:20-bookworm-slim] [--nats-server /usr/sbin/nats-server]
// A tag not given comes from LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE, LOCKSTEP_NODE_IMAGE, else the default.
// Exit 0 built; 1 a build failed (which image, and why); 2 a bad flag.
import { parseArgs } from 'node:util';

process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true'; // it keeps no container; its reaper's image needs a registry
const { buildImages, ImageBuildFailed, InvalidInput } = await import('@lockstep/testcontainers');
let values;
try {
  ({ values } = parseArgs({
    options: {
      image: { type: 'string' },
      'nats-image': { type: 'string' },
      'node-image': { type: 'string' },
      base: { type: 'string' },
      'nats-server': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (err) {
  process.stderr.write(`lockstep-images: ${err.message}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(
    'usage: lockstep-images [--image lockstep:dev] [--nats-image lockstep-nats:2.9.10] [--node-image lockstep-node:20] [--base IMAGE] [--nats-server PATH]\n' +
      "Builds lockstep-node:20 (this machine's node; not with --base), lockstep-nats:2.9.10 and lockstep:dev without pulling anything.\n" +
      'A tag not given comes from LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE and LOCKSTEP_NODE_IMAGE when set.\n',
  );
  process.exit(0);
}
try {
  const built = await buildImages({
    image: values.image,
    natsImage: values['nats-image'],
    nodeImage: values['node-image'],
    base: values.base,
    natsServer: values['nats-server'],
  });
  for (const tag of built) process.stdout.write(`lockstep-images: built ${tag}\n`);
} catch (err) {
  if (!(err instanceof InvalidInput || err instanceof ImageBuildFailed)) throw err;
  // one line: the problems after the first one's colon, joined by semicolons
  process.stderr.write(`lockstep-images: ${err.message.replace(/:\n\s*/, ': ').replace(/\n\s*/g, '; ')}\n`);
  process.exit(err instanceof InvalidInput ? 2 : 1);
}
