import type { Transport } from './edge.ts';

type Deliver = (bytes: Uint8Array, subject: string) => void;
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
 * bytes. Delivery is asynchronous (a microtask after the publish), in publish
 * order, as NATS delivers one publisher's messages on a subject.
 *
 * Every subject of the wire table has one receiver (`wireChannels`), so a
 * message whose receiver is in this process has no other: it is not published
 * on NATS at all, and an observer subscribed there does not see it.
 */
export class LocalBus {
  private readonly subs = new Set<Sub>();
  /** The local receivers of each subject published on lately (cleared when a subscription comes or goes). */
  private readonly bySubject = new Map<string, Sub[]>();

  /** Receive what actors of this process publish on subjects matching `pattern`; returns the unsubscribe. */
  subscribe(pattern: string, deliver: Deliver): () => void {
    const sub: Sub = { pattern, deliver };
    this.subs.add(sub);
    this.bySubject.clear();
    return () => {
      this.subs.delete(sub);
      this.bySubject.clear();
    };
  }

  /** Hand `bytes` to the receivers of `subject` in this process; false (and nothing done) if it has none. */
  publish(subject: string, bytes: Uint8Array): boolean {
    let to = this.bySubject.get(subject);
    if (!to) {
      to = [...this.subs].filter((s) => subjectMatches(s.pattern, subject));
      if (this.bySubject.size >= 4096) this.bySubject.clear();
      this.bySubject.set(subject, to);
    }
    if (to.length === 0) return false;
    const receivers = to;
    queueMicrotask(() => {
      // a receiver that unsubscribed meanwhile (its actor stopped) gets nothing
      for (const s of receivers) if (this.subs.has(s)) s.deliver(bytes, subject);
    });
    return true;
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
