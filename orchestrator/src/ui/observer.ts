import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { z } from 'zod';
import { connectNats, decodeBatch } from '@lockstep/actors';
import { decodeControl, subjectMatches, subjects, type HostHeartbeat, type PodHeartbeat, type StepCommitted } from '@lockstep/topology';
import type { Login } from '@lockstep/infra';

/** Largest control message the observer reads (a heartbeat is a few hundred bytes). */
const MAX_CONTROL_BYTES = 64 * 1024;
const ROUTEZ_TIMEOUT_MS = 1_000;

/** What nats-server's `/routez` answers, as far as the page reads it (outside input: validated; unknown fields kept). */
export const Routez = z.looseObject({
  routes: z
    .array(
      z.looseObject({
        in_msgs: z.number().int().min(0),
        out_msgs: z.number().int().min(0),
        in_bytes: z.number().int().min(0),
        out_bytes: z.number().int().min(0),
      }),
    )
    .max(4096)
    .nullish(),
});

/**
 * How often the route counters are read (ms): a quarter of a second, so that a run of a second or two (a `tiny` run
 * with two steps in flight) is read while its tensors cross, not only before them (at 1 s the page's DCN bytes of
 * such a run could stay 0).
 */
export const ROUTEZ_POLL_MS = 250;

/** Pod 0's route counters summed over its routes, from its monitoring endpoint; undefined when it does not answer. */
export async function readRoutes(
  monitor: string,
): Promise<{ inBytes: number; outBytes: number; inMsgs: number; outMsgs: number } | undefined> {
  try {
    const res = await fetch(`${monitor}/routez`, { signal: AbortSignal.timeout(ROUTEZ_TIMEOUT_MS) });
    if (!res.ok) return undefined;
    const r = Routez.safeParse(await res.json());
    if (!r.success) return undefined;
    const routes = r.data.routes ?? [];
    const sum = (f: (x: (typeof routes)[number]) => number) => routes.reduce((n, x) => n + f(x), 0);
    return {
      inBytes: sum((x) => x.in_bytes),
      outBytes: sum((x) => x.out_bytes),
      inMsgs: sum((x) => x.in_msgs),
      outMsgs: sum((x) => x.out_msgs),
    };
  } catch {
    return undefined;
  }
}

/**
 * Watches a run on the wire as its `observer` NATS user (it may subscribe to
 * the run's subjects and publish nothing): on each pod's own server, that
 * pod's hosts' heartbeats (`pod.<p>.report.*`) and the pod's own
 * (`client.report.<p>`), so that nothing it listens to has to cross the route
 * between the pods' servers. Every message is decoded and validated; others
 * than heartbeats (and, with `onCommitted`, the client's committed steps) are
 * ignored. Also polls pod 0's `/routez` every `pollMs` (default ROUTEZ_POLL_MS).
 */
export class RunObserver {
  private readonly connections: NatsConnection[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(
    private readonly o: {
      runId: string;
      /** Each pod's server URL, by pod. */
      urls: string[];
      login: Login | undefined;
      /** Pod 0's server's monitoring endpoint (http://host:port), if it has one. */
      monitor: string | null;
      log: Logger;
      onHeartbeat: (m: HostHeartbeat | PodHeartbeat, at: number) => void;
      onRoutes: (c: { inBytes: number; outBytes: number; inMsgs: number; outMsgs: number }, at: number) => void;
      /** Also hear the client's committed steps (the progress subject, on pod 0's server): watching without the run's record. */
      onCommitted?: (m: StepCommitted, at: number) => void;
      pollMs?: number;
    },
  ) {}

  /** Connect to every pod's server and start polling; a server that cannot be reached is logged, not fatal (the run goes on). */
  async start(): Promise<void> {
    await Promise.all(
      this.o.urls.map(async (url, pod) => {
        try {
          const nc = await connectNats({
            servers: url,
            name: `observer/${pod}`,
            log: this.o.log,
            timeoutMs: 10_000,
            ...(this.o.login ? { user: this.o.login.user, pass: this.o.login.password } : {}),
          });
          if (this.stopped) return void (await nc.close());
          this.connections.push(nc);
          const watched = [subjects.podReport(this.o.runId, pod, '*'), subjects.clientReport(this.o.runId, pod)];
          if (pod === 0 && this.o.onCommitted) watched.push(subjects.progress(this.o.runId));
          const take = (bytes: Uint8Array) => {
            const d = decodeControl(bytes, MAX_CONTROL_BYTES);
            if (!d.ok) return;
            if (d.value.kind === 'host.heartbeat' || d.value.kind === 'pod.heartbeat') this.o.onHeartbeat(d.value, Date.now());
            else if (d.value.kind === 'step.committed') this.o.onCommitted?.(d.value, Date.now());
          };
          for (const subject of watched) nc.subscribe(subject, { callback: (err, msg) => void (err ? undefined : take(msg.data)) });
          // the hosts' reports reach their pod's process in batch frames (see ProcessWire): the reports inside them
          const reports = subjects.podReport(this.o.runId, pod, '*');
          nc.subscribe(subjects.batch(this.o.runId, pod, 'pod', '*'), {
            callback: (err, msg) => {
              if (err) return;
              const d = decodeBatch(msg.data);
              if (d.ok) for (const e of d.entries) if (subjectMatches(reports, e.subject)) take(e.bytes);
            },
          });
        } catch (err) {
          this.o.log.warn({ pod, err: (err as Error).message }, 'status page: cannot watch this pod on the wire');
        }
      }),
    );
    const monitor = this.o.monitor;
    if (monitor && !this.stopped) {
      const poll = async () => {
        const c = await readRoutes(monitor);
        if (c && !this.stopped) this.o.onRoutes(c, Date.now());
      };
      void poll();
      this.timer = setInterval(() => void poll(), this.o.pollMs ?? ROUTEZ_POLL_MS);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.connections.map((nc) => nc.close().catch(() => {})));
    this.connections.length = 0;
  }
}
