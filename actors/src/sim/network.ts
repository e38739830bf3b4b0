import { createHash, type Hash } from 'node:crypto';
import { isTensorFrame, subjectMatches } from '@lockstep/topology';
import type { Transport } from '../wire/edge.ts';
import { forgedCopy } from '../wire/faults.ts';
import type { SimClock, SimRandom } from './clock.ts';

/** Message faults the simulated network injects on each delivery (probabilities in [0, 1]). */
export interface NetFaults {
  drop: number;
  duplicate: number;
  /** Deliver late by up to `delayMaxMs` (which also reorders). */
  delay: number;
  delayMaxMs: number;
}

export const noNetFaults: NetFaults = { drop: 0, duplicate: 0, delay: 0, delayMaxMs: 0 };

export interface SimNetworkOptions {
  /** One-way latency between actors on the same pod's server, and across the DCN (ms). */
  inPodMs: number;
  crossPodMs: number;
}

interface Subscriber {
  actor: string;
  pod: number;
  alive: boolean;
  deliver: (bytes: Uint8Array, subject: string) => void;
}

/**
 * Where a subscription goes: an exact subject; a pattern whose wildcards are
 * its last `stars` tokens (`lockstep.r.host.0.1.data.*.*`: every sender to
 * host 0/1), by what comes before them, the receiver's prefix; or any other
 * pattern, matched token by token.
 */
type Route = { kind: 'exact'; key: string } | { kind: 'prefix'; key: string; stars: number } | { kind: 'pattern'; pattern: string };

/** How many subjects the network remembers the subscribers of. */
const ROUTES_KEPT = 4096;

function routeOf(pattern: string): Route {
  const tokens = pattern.split('.');
  let stars = 0;
  while (stars < tokens.length - 1 && tokens[tokens.length - 1 - stars] === '*') stars++;
  const head = tokens.slice(0, tokens.length - stars);
  if (head.some((t) => t === '*' || t === '>')) return { kind: 'pattern', pattern };
  return stars === 0 ? { kind: 'exact', key: pattern } : { kind: 'prefix', key: head.join('.'), stars };
}

/** What the network did, for the trace and the events hash. */
export type NetEvent =
  | { t: number; what: 'deliver'; subject: string; from: string; to: string; bytes: number }
  | { t: number; what: 'drop'; subject: string; from: string; to: string; why: 'fault' | 'partition' | 'dead' }
  | { t: number; what: 'duplicate' | 'delay' | 'forge'; subject: string; from: string; to: string };

/**
 * The simulated data-center: every actor "connects" to its pod's server (the
 * client to pod 0's), messages are routed by subject (a NATS pattern, as a
 * server would: exact, or a receiver's subject with `*` for its senders) to every live
 * subscriber, on the simulated clock, with a fixed latency per link (so a
 * link keeps its order unless a fault delays a message). Crossing between
 * pods' servers is the DCN: it can be cut both ways or one way. Seeded faults
 * drop, duplicate and delay deliveries; a scheduled forge follows the next
 * tensor chunk with a forged copy of it. Every delivery goes into a SHA-256
 * (the events hash) and, when tracing, into `trace`.
 */
export class SimNetwork {
  private readonly exact = new Map<string, Subscriber[]>();
  /** By the number of trailing `*` tokens, then by the receiver's prefix. */
  private readonly byPrefix: Map<string, Subscriber[]>[] = [];
  private patterns: { pattern: string; s: Subscriber }[] = [];
  /** Who each subject published lately goes to (forgotten whenever anyone subscribes or unsubscribes). */
  private readonly routes = new Map<string, Subscriber[]>();
  faults: NetFaults = noNetFaults;
  /** The DCN cut: forward is pod 0 -> pod 1 (lower to higher), back the other way. */
  cut = { forward: false, back: false };
  /** The next tensor chunk delivered is followed by a forged copy of it (then this is cleared). */
  forgeNext = false;
  readonly hash = new BatchedHash();
  readonly trace: NetEvent[] | undefined;
  delivered = 0;
  dropped = 0;
  crossPodBytes = 0;

  constructor(
    private readonly clock: SimClock,
    private readonly rng: SimRandom,
    private readonly opts: SimNetworkOptions,
    trace = false,
  ) {
    this.trace = trace ? [] : undefined;
  }

  /** The transport of actor `actor`, connected to pod `pod`'s server; `close()` is its death (nothing more in or out). */
  transport(actor: string, pod: number): Transport & { close(): void } {
    const mine: Subscriber[] = [];
    let open = true;
    return {
      subscribe: (subject, onMessage) => {
        const s: Subscriber = { actor, pod, alive: true, deliver: onMessage };
        mine.push(s);
        const route = routeOf(subject);
        this.routes.clear();
        if (route.kind === 'pattern') this.patterns.push({ pattern: route.pattern, s });
        else {
          if (route.kind === 'prefix' && !this.byPrefix[route.stars]) this.byPrefix[route.stars] = new Map();
          const map = route.kind === 'exact' ? this.exact : this.byPrefix[route.stars];
          map.set(route.key, [...(map.get(route.key) ?? []), s]);
        }
        return () => {
          s.alive = false;
          this.routes.clear();
          if (route.kind === 'pattern') this.patterns = this.patterns.filter((x) => x.s !== s);
          else {
            const map = route.kind === 'exact' ? this.exact : this.byPrefix[route.stars];
            map.set(
              route.key,
              (map.get(route.key) ?? []).filter((x) => x !== s),
            );
          }
        };
      },
      publish: (subject, bytes) => {
        if (open) this.publish(actor, pod, subject, bytes);
      },
      close: () => {
        open = false;
        for (const s of mine) s.alive = false;
      },
    };
  }

  private note(e: NetEvent): void {
    this.trace?.push(e);
  }

  private publish(from: string, fromPod: number, subject: string, bytes: Uint8Array): void {
    let to = this.routes.get(subject);
    if (!to) {
      to = this.route(subject);
      if (this.routes.size >= ROUTES_KEPT) this.routes.clear();
      this.routes.set(subject, to);
    }
    for (const s of to) this.send(from, fromPod, subject, bytes, s);
  }

  /** Every subscriber whose subscription matches `subject`: exact ones, then by the receiver's prefix (cutting off one trailing token at a time), then other patterns. */
  private route(subject: string): Subscriber[] {
    const to = [...(this.exact.get(subject) ?? [])];
    let end = subject.length;
    for (let stars = 1; stars < this.byPrefix.length; stars++) {
      end = subject.lastIndexOf('.', end - 1);
      if (end < 0) break;
      to.push(...(this.byPrefix[stars]?.get(subject.slice(0, end)) ?? []));
    }
    for (const { pattern, s } of this.patterns) if (subjectMatches(pattern, subject)) to.push(s);
    return to;
  }

  /** One delivery to one subscriber, through the DCN cut and the seeded faults, after the link's latency; a scheduled forge right behind it. */
  private send(from: string, fromPod: number, subject: string, bytes: Uint8Array, s: Subscriber): void {
    const cross = s.pod !== fromPod;
    if (cross && (fromPod < s.pod ? this.cut.forward : this.cut.back)) {
      this.dropped++;
      this.note({ t: this.clock.now(), what: 'drop', subject, from, to: s.actor, why: 'partition' });
      return;
    }
    const f = this.faults;
    if (this.rng.chance(f.drop)) {
      this.dropped++;
      this.note({ t: this.clock.now(), what: 'drop', subject, from, to: s.actor, why: 'fault' });
      return;
    }
    let latency = cross ? this.opts.crossPodMs : this.opts.inPodMs;
    if (this.rng.chance(f.delay)) {
      latency += this.rng.next() * f.delayMaxMs;
      this.note({ t: this.clock.now(), what: 'delay', subject, from, to: s.actor });
    }
    const copies = this.rng.chance(f.duplicate) ? 2 : 1;
    if (copies === 2) this.note({ t: this.clock.now(), what: 'duplicate', subject, from, to: s.actor });
    for (let c = 0; c < copies; c++) this.deliverLater(s, subject, from, cross, bytes, latency + c * 0.01);
    // a forged copy right behind the real one (before a duplicate of it)
    const forged = this.forgeNext && isTensorFrame(bytes) ? forgedCopy(bytes) : undefined;
    if (forged) {
      this.forgeNext = false;
      this.note({ t: this.clock.now(), what: 'forge', subject, from, to: s.actor });
      this.deliverLater(s, subject, from, cross, forged, latency + 0.005);
    }
  }

  /** Deliver `bytes` to `s` in `ms` of simulated time, if it is still alive then. */
  private deliverLater(s: Subscriber, subject: string, from: string, cross: boolean, bytes: Uint8Array, ms: number): void {
    this.clock.setTimeout(() => {
      if (!s.alive) {
        this.note({ t: this.clock.now(), what: 'drop', subject, from, to: s.actor, why: 'dead' });
        return;
      }
      this.delivered++;
      if (cross) this.crossPodBytes += bytes.length;
      this.hash.update(`${this.clock.now()}|${subject}|${s.actor}|`, bytes);
      this.note({ t: this.clock.now(), what: 'deliver', subject, from, to: s.actor, bytes: bytes.length });
      s.deliver(bytes, subject);
    }, ms);
  }
}

/**
 * SHA-256 over a long run of small updates, fed to the hash in blocks of about 64 KiB (one call per block
 * instead of two per delivery). The digest is the same as updating with each piece in turn: SHA-256 sees
 * one stream of bytes either way.
 */
export class BatchedHash {
  private readonly hash: Hash = createHash('sha256');
  private pending: Uint8Array[] = [];
  private size = 0;

  update(head: string, bytes: Uint8Array): void {
    const h = Buffer.from(head);
    this.pending.push(h, bytes);
    this.size += h.length + bytes.length;
    if (this.size >= 65536) this.flush();
  }

  digest(encoding: 'hex'): string {
    this.flush();
    return this.hash.digest(encoding);
  }

  private flush(): void {
    if (this.pending.length > 0) this.hash.update(Buffer.concat(this.pending, this.size));
    this.pending = [];
    this.size = 0;
  }
}
