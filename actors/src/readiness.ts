import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { decodeControl, encodeControl, type Pong } from '@lockstep/topology';
import type { Logger } from 'pino';
import { StartupTimeout } from './errors.ts';

/**
 * Start-up handshake, outside the step protocol: an actor answers pings on its
 * ping subject, and waits (with a deadline) until the actors it talks to
 * answer too. A reply proves the subscription exists and its interest has
 * reached this actor's server, across the pods' cluster route as well.
 */
export function answerPings(
  nc: NatsConnection,
  subject: string,
  runId: string,
  me: string,
  state: () => { ready: boolean; waitingFor: string[] },
  log: Logger,
): Subscription {
  return nc.subscribe(subject, {
    callback: (_err, m) => {
      const d = decodeControl(m.data, 4096);
      if (!d.ok || d.value.kind !== 'ping' || d.value.runId !== runId) {
        log.warn({ reason: d.ok ? 'not a ping for this run' : d.reason }, 'ping rejected');
        return;
      }
      const s = state();
      const pong: Pong = {
        v: 1,
        runId,
        step: 0,
        attempt: 0,
        sender: me,
        msgId: `${me}/pong/${Date.now()}`,
        kind: 'pong',
        ready: s.ready,
        waitingFor: s.waitingFor.slice(0, 100),
      };
      m.respond(encodeControl(pong));
    },
  });
}

export interface Peer {
  name: string;
  subject: string;
}

/** Ping every peer until each answers (and, with `needReady`, says it is ready), or throw StartupTimeout. */
export async function waitForPeers(
  nc: NatsConnection,
  opts: {
    runId: string;
    me: string;
    peers: Peer[];
    deadlineMs: number;
    needReady?: boolean;
    log: Logger;
    onProgress?: (reached: number, total: number) => void;
  },
): Promise<void> {
  const pending = new Map(opts.peers.map((p) => [p.name, p]));
  const lastWaiting = new Map<string, string[]>();
  const until = Date.now() + opts.deadlineMs;
  let round = 0;
  while (pending.size > 0) {
    if (Date.now() > until) {
      const detail = [...pending.keys()].map((n) =>
        lastWaiting.get(n)?.length ? `${n} (waiting for ${lastWaiting.get(n)!.join(', ')})` : n,
      );
      throw new StartupTimeout(
        `${opts.me}: not reachable within ${opts.deadlineMs} ms: ${detail.join('; ')}. Check that every process started (see its log) and that the NATS servers are clustered.`,
      );
    }
    await Promise.all(
      [...pending.values()].map(async (peer) => {
        const ping = {
          v: 1 as const,
          runId: opts.runId,
          step: 0,
          attempt: 0,
          sender: opts.me,
          msgId: `${opts.me}/ping/${peer.name}/${round}`,
          kind: 'ping' as const,
        };
        try {
          const reply = await nc.request(peer.subject, encodeControl(ping), { timeout: 1000 });
          const d = decodeControl(reply.data, 4096);
          if (!d.ok || d.value.kind !== 'pong') return;
          if (opts.needReady && !d.value.ready) {
            lastWaiting.set(peer.name, d.value.waitingFor);
            return;
          }
          pending.delete(peer.name);
        } catch {
          // no responder yet, or a timeout: try again next round
        }
      }),
    );
    opts.onProgress?.(opts.peers.length - pending.size, opts.peers.length);
    round++;
    if (pending.size > 0) await new Promise((r) => setTimeout(r, Math.min(50 * round, 250)));
  }
  opts.log.debug({ peers: opts.peers.length }, 'peers reachable');
}
