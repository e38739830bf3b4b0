// A worker process of `lockstep sim` (forked with an IPC channel): runs whole schedules (seeds it is sent) and sends
// back each result. It loads the same code as the process that started it (the bundle or the sources; see entry.js),
// and ends when that process closes the channel (or goes away).
import { load } from './entry.js';

const { runOne, scheduleFor, profileFor } = await load('sim');
const plan = JSON.parse(process.argv[2]);
process.on('disconnect', () => process.exit(0));
process.on('message', async (seed) => {
  const { trace: _, ...r } = await runOne(scheduleFor(plan, seed));
  process.send({ ...r, profile: profileFor(plan.profile, seed) });
});
