import { fromCallback } from 'xstate';

/** Sends its parent `clock.tick` every `everyMs`: how a machine notices silence without any message arriving. */
export const clock = fromCallback<{ type: 'noop' }, { everyMs: number }>(({ sendBack, input }) => {
  const timer = setInterval(() => sendBack({ type: 'clock.tick' }), input.everyMs);
  return () => clearInterval(timer);
});

/**
 * Of peers last heard from at `lastSeen[i]` (performance.now), the one silent
 * the longest past its own limit, if any.
 */
export function longestSilence(lastSeen: readonly number[], limitFor: (i: number) => number): { index: number; ms: number } | undefined {
  const now = performance.now();
  let worst: { index: number; ms: number } | undefined;
  lastSeen.forEach((seen, index) => {
    const ms = now - seen;
    if (ms > limitFor(index) && (!worst || ms > worst.ms)) worst = { index, ms };
  });
  return worst;
}
