// A worker thread of `lockstep sim`: runs whole schedules (seeds it is sent) and posts back each result.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { runOne, scheduleFor, profileFor } = await import('../src/sim.ts');
const { plan } = workerData;
parentPort.on('message', async (seed) => {
  const { trace: _, ...r } = await runOne(scheduleFor(plan, seed));
  parentPort.postMessage({ ...r, profile: profileFor(plan.profile, seed) });
});
