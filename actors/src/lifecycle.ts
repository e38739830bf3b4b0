import type { NatsConnection } from '@nats-io/transport-node';
import { waitFor, type AnyActorRef } from 'xstate';
import type { Logger } from 'pino';

/**
 * Runs a started actor until its machine reaches `stopped` (its final report
 * is sent), then flushes NATS. Rejects if the actor errors: every root actor
 * has an error subscriber, so a failed invoked actor never exits Node silently.
 */
export function untilStopped(
  actor: AnyActorRef,
  opts: { nc: NatsConnection; log: Logger; name: string; cleanup: () => void },
): Promise<void> {
  let failed: (err: unknown) => void = () => {};
  const crashed = new Promise<never>((_, reject) => (failed = reject));
  actor.subscribe({ error: (err) => failed(err) });
  return Promise.race([
    waitFor(actor, (s) => s.value === 'stopped', { timeout: Infinity }).then(async () => {
      await opts.nc.flush();
      opts.log.info({ rejected: (actor.getSnapshot() as { context: { rejected: unknown } }).context.rejected }, `${opts.name} stopped`);
    }),
    crashed,
  ]).finally(() => {
    opts.cleanup();
    actor.stop();
  });
}
