import type { NatsConnection } from '@nats-io/transport-node';
import { waitFor, type AnyActorRef } from 'xstate';
import type { Logger } from 'pino';
import { encodeControl, type HostHeartbeat, type PodHeartbeat } from '@lockstep/topology';
import { envelope } from './rejects.ts';

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

function podBeat(
  base: Omit<PodHeartbeat, 'kind' | 'ready' | 'silentHosts' | 'lostHosts'>,
  h: { silent: number[]; lost: number[] },
): PodHeartbeat {
  return { ...base, kind: 'pod.heartbeat', ready: h.silent.length === 0 && h.lost.length === 0, silentHosts: h.silent, lostHosts: h.lost };
}

/**
 * Publishes `kind` (host.heartbeat or pod.heartbeat) with the actor's current
 * phase every `everyMs`, on `subject`. Returns `beat` (one now) and `stop`.
 */
export function heartbeats(opts: {
  nc: NatsConnection;
  subject: string;
  me: string;
  kind: 'host.heartbeat' | 'pod.heartbeat';
  everyMs: number;
  state: () => { runId: string; step: number; attempt: number; phase: string };
  /** For pods: hosts not heard from lately, and hosts with no replica left to heal from; none of either means a step can run. */
  hosts?: () => { silent: number[]; lost: number[] };
  log: Logger;
}): { beat: () => void; stop: () => void } {
  let n = 0;
  const beat = () => {
    const c = opts.state();
    const base = { ...envelope({ ...c, step: Math.max(0, c.step) }, opts.me, `${opts.kind}.${n++}`), phase: c.phase };
    const msg: HostHeartbeat | PodHeartbeat =
      opts.kind === 'pod.heartbeat' ? podBeat(base, opts.hosts?.() ?? { silent: [], lost: [] }) : { ...base, kind: 'host.heartbeat' };
    try {
      opts.nc.publish(opts.subject, encodeControl(msg));
    } catch (err) {
      opts.log.warn({ err }, 'heartbeat not sent');
    }
  };
  const timer = setInterval(beat, opts.everyMs);
  return { beat, stop: () => clearInterval(timer) };
}
