import type { Transport } from './edge.ts';

type Deliver = (bytes: Uint8Array, subject: string) => void;

/** Messages a LocalBus delivers in one turn of the event loop at most. */
export const ROUND_MESSAGES = 2048;
type Sub = { pattern: string; deliver: Deliver };

/** Whether NATS subject `subject` matches `pattern` (`*`: one token, `>`: one or more tokens at the end). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/**
 * The actors of one OS process (hosts grouped `hostsPerProcess` to a process):
 * a message one of them publishes on a subject another of them receives is
 * handed over in memory, not sent to the NATS server and back. It still goes
 * through both edges whole: the sender's fault layer, the receiver's decoding,
 * schema, sender and run checks, de-duplication and reassembly, with the same
 * bytes. Delivery is asynchronous: what is published in one turn of the event
 * loop is delivered, in publish order (as NATS delivers one publisher's
 * messages on a subject), in one round on the next (`setImmediate`), so the
 * receivers' edges see a burst (see EdgeOptions.batchTensors); what they publish
 * in reply joins that round, up to ROUND_MESSAGES a turn.
 *
 * Every subject of the wire table has one receiver (`wireChannels`), so a
 * message whose receiver is in this process has no other: it is not published
 * on NATS at all, and an observer subscribed there does not see it.
 *
 * Receivers are found by subject in constant time for the patterns actors
 * subscribe with (exact, or `*` in the sender's trailing tokens), whatever the
 * number of actors; other patterns are matched one by one.
 */
export class LocalBus {
  private readonly subs = new Set<Sub>();
  /** Subscriptions by their pattern's head (the tokens before its trailing `*`s), per count of trailing `*`s. */
  private readonly byHead: Map<string, Sub[]>[] = [];
  private others: Sub[] = [];
  private queue: { to: Sub[]; subject: string; bytes: Uint8Array }[] = [];
  private scheduled = false;

  /** Receive what actors of this process publish on subjects matching `pattern`; returns the unsubscribe. */
  subscribe(pattern: string, deliver: Deliver): () => void {
    const sub: Sub = { pattern, deliver };
    this.subs.add(sub);
    const tokens = pattern.split('.');
    let stars = 0;
    while (stars < tokens.length - 1 && tokens[tokens.length - 1 - stars] === '*') stars++;
    const head = tokens.slice(0, tokens.length - stars);
    const indexed = !head.some((t) => t === '*' || t === '>');
    if (indexed) {
      this.byHead[stars] ??= new Map();
      const key = head.join('.');
      this.byHead[stars].set(key, [...(this.byHead[stars].get(key) ?? []), sub]);
    } else this.others.push(sub);
    return () => {
      this.subs.delete(sub);
      if (!indexed) this.others = this.others.filter((s) => s !== sub);
      else {
        const key = head.join('.');
        const left = (this.byHead[stars].get(key) ?? []).filter((s) => s !== sub);
        if (left.length > 0) this.byHead[stars].set(key, left);
        else this.byHead[stars].delete(key);
      }
    };
  }

  /** The receivers of `subject` in this process. */
  private receivers(subject: string): Sub[] {
    const to: Sub[] = [];
    let end = subject.length;
    for (let stars = 0; stars < this.byHead.length; stars++) {
      if (stars > 0) {
        end = subject.lastIndexOf('.', end - 1);
        if (end < 0) break;
      }
      const m = this.byHead[stars]?.get(stars === 0 ? subject : subject.slice(0, end));
      if (m) to.push(...m);
    }
    for (const s of this.others) if (subjectMatches(s.pattern, subject)) to.push(s);
    return to;
  }

  /** Hand `bytes` to the receivers of `subject` in this process (in the next round); false (and nothing done) if it has none. */
  publish(subject: string, bytes: Uint8Array): boolean {
    const to = this.receivers(subject);
    if (to.length === 0) return false;
    this.queue.push({ to, subject, bytes });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.round());
    }
    return true;
  }

  /**
   * Hand `bytes` to the receivers of `subject` in this process in the next round (a message another process sent in a
   * batch frame); false (and nothing done) if it has none.
   */
  enqueue(subject: string, bytes: Uint8Array): boolean {
    return this.publish(subject, bytes);
  }

  /**
   * One round: at most `budget` messages (ROUND_MESSAGES a turn of the event loop), then the rest in the next turn,
   * so that a burst of a large pod's collectives does not keep the process from its socket (and its timers) for
   * seconds. What the receivers publish in reply within the budget is delivered in this turn too: their edges hand
   * tensors to the machines in a microtask, which runs before this round's own continuation (microtasks run in
   * order), so a chain of hosts in one process (`collectives.inPod: chain`) passes in one turn, not a turn a hop.
   */
  private round(budget = ROUND_MESSAGES): void {
    const q = this.queue.length > budget ? this.queue.splice(0, budget) : this.queue;
    if (q === this.queue) this.queue = [];
    // a receiver that unsubscribed meanwhile (its actor stopped) gets nothing
    for (const m of q) for (const s of m.to) if (this.subs.has(s)) s.deliver(m.bytes, m.subject);
    const left = budget - q.length;
    queueMicrotask(() => {
      if (this.queue.length === 0) this.scheduled = false;
      else if (left > 0) this.round(left);
      else setImmediate(() => this.round());
    });
  }

  /** A transport that delivers in this process what has a receiver here and sends the rest through `remote`. */
  transport(remote: Transport): Transport {
    return {
      subscribe: (subject, onMessage) => {
        const local = this.subscribe(subject, onMessage);
        const far = remote.subscribe(subject, onMessage);
        return () => {
          local();
          far();
        };
      },
      publish: (subject, bytes) => {
        if (!this.publish(subject, bytes)) remote.publish(subject, bytes);
      },
    };
  }
}
