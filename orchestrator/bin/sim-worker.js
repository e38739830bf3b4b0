// A worker thread of `lockstep sim`: runs whole schedules (seeds it is sent) and posts back each result.
// It loads the same code as the process that started it (the bundle or the sources; see entry.js).
import { parentPort, workerData } from 'node:worker_threads';
import { load } from './entry.js';

const { runOne, scheduleFor, profileFor } = await load('sim');
const { plan } = workerData;
parentPort.on('message', async (seed) => {
  const { trace: _, ...r } = await runOne(scheduleFor(plan, seed));
  parentPort.postMessage({ ...r, profile: profileFor(plan.profile, seed) });
});
