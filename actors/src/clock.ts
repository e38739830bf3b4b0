import { fromCallback } from 'xstate';

/**
 * The clock a run's actors live on: xstate's `Clock` (what its delayed events
 * are scheduled with) plus `now()` in milliseconds. A real run uses
 * `systemClock` (epoch ms, so processes line up); the simulator uses its own
 * simulated clock. Machines never read it: adapters and provided actors stamp
 * the time onto the events they deliver (`at`), and pass the clock to
 * `createActor(..., { clock })` for delays.
 */
export interface RunClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** Wall-clock time in epoch milliseconds (sub-millisecond, monotonic within a process) and Node's timers. */
export const systemClock: RunClock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Something that happened at a time on the run's clock (ms). */
export interface Timed<T> {
  value: T;
  at: number;
}

/** The periodic event a machine notices silence by and sends its heartbeats on: `at` is when it fired (ms). */
export type ClockTick = { type: 'clock.tick'; at: number };

/**
 * A provided `clock` actor: sends its parent `clock.tick` every `everyMs` on
 * `clock`, stamped with the time it fired.
 */
export function ticker(clock: RunClock) {
  return fromCallback<{ type: 'noop' }, { everyMs: number }>(({ sendBack, input }) => {
    let timer: unknown;
    let stopped = false;
    const arm = () => {
      timer = clock.setTimeout(() => {
        if (stopped) return;
        sendBack({ type: 'clock.tick', at: clock.now() } satisfies ClockTick);
        arm();
      }, input.everyMs);
    };
    arm();
    return () => {
      stopped = true;
      clock.clearTimeout(timer);
    };
  });
}

/**
 * Of peers last heard from at `lastSeen[i]` (ms), the one silent the longest
 * past its own limit at time `now`, if any.
 * Example: longestSilence([0, 250], 301, () => 300) -> { index: 0, ms: 301 }.
 */
export function longestSilence(
  lastSeen: readonly number[],
  now: number,
  limitFor: (i: number) => number,
): { index: number; ms: number } | undefined {
  let worst: { index: number; ms: number } | undefined;
  lastSeen.forEach((seen, index) => {
    const ms = now - seen;
    if (ms > limitFor(index) && (!worst || ms > worst.ms)) worst = { index, ms };
  });
  return worst;
}

/**
 * The time an event carries: `at` on wire and clock events, `output.at` on a
 * timed actor's done event; `fallback` (the machine's last known time) for
 * xstate's own events (init, delays) that carry none.
 */
export function timeOf(event: unknown, fallback: number): number {
  const e = event as { at?: unknown; output?: { at?: unknown } };
  if (typeof e.at === 'number') return e.at;
  if (typeof e.output?.at === 'number') return e.output.at;
  return fallback;
}
