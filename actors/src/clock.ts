import { fromCallback } from 'xstate';

/** Sends its parent `clock.tick` every `everyMs`: how a machine notices silence without any message arriving. */
export const clock = fromCallback<{ type: 'noop' }, { everyMs: number }>(({ sendBack, input }) => {
  const timer = setInterval(() => sendBack({ type: 'clock.tick' }), input.everyMs);
  return () => clearInterval(timer);
});
