import type { Topology } from '@lockstep/topology';

/**
 * Whom a host serves its committed state, and how often: the serving side of
 * healing (heal.ts has the messages). A host's state is everything it holds
 * (the full parameters and its shard's optimizer state), so it is given only
 * to the cross-pod peer that needs it, and never faster than that peer asks:
 *
 *   - only to host h of a pod whose own scheduler says that host is healing
 *     (heal.expect: pod p passes on each heartbeat of its host h that says
 *     so, at once and every interval). That word holds for
 *     `heartbeat.misses` intervals after it last came, then lapses;
 *   - at most one answer per peer per half heartbeat interval, by the times
 *     the requests carry (`at`). The healer asks once an interval; half an
 *     interval leaves room for one ask delayed on the way more than the next,
 *     and makes a repeat of the request being answered (or a flood under the
 *     healer's name) cost at most two answers an interval.
 *
 * The healer asks at once on restarting, before its pod's word can have come
 * (the word goes through the pod); so the last request that came before the
 * word is kept, and answered when the word comes if it is less than a
 * heartbeat interval old (the healer would ask again by then), instead of at
 * its next ask.
 *
 * A host that holds no state says so (state.none) to any host h of another
 * pod that asks, at the same rate: it gives nothing away, and a healer whose
 * every peer is healing too learns at once that no replica is left.
 *
 * What a host remembers for this is one slot per pod (fixed size, whatever
 * comes): until when that pod's host h may be served, when it last was, and
 * its last request that came before the word. The rest is rejected and
 * counted by why.
 */
export interface ServeSlot {
  /** Host h of this pod may be served until this time (ms on the run's clock); -1: it was never said to heal. */
  expectedUntil: number;
  /** When it was last answered (state or none); -1: never. */
  answeredAt: number;
  /** Its last request that came while it was not expected, unanswered: its round and when it came. */
  early: { round: number; at: number } | undefined;
}

/** What to do with a state request: answer with the state, answer "none", or reject it, counted under `reason`. */
export type ServeVerdict =
  | { kind: 'state' }
  | { kind: 'none' }
  | { kind: 'reject'; reason: 'state request not expected' | 'state request too soon' };

/** One slot per pod, none of them expected yet. */
export function noServeSlots(pods: number): ServeSlot[] {
  return Array.from({ length: pods }, () => ({ expectedUntil: -1, answeredAt: -1, early: undefined }));
}

/** How long a pod's word that its host heals holds: as long as its pod gives a silent host. */
export function expectWindowMs(t: Topology): number {
  return t.heartbeat.intervalMs * t.heartbeat.misses;
}

/** The least time between two answers to one peer. */
export function answerGapMs(t: Topology): number {
  return t.heartbeat.intervalMs / 2;
}

/** The slots once host h of pod `pod` is said (at `at`) to be healing. */
export function slotsExpecting(slots: readonly ServeSlot[], pod: number, at: number, t: Topology): ServeSlot[] {
  return slots.map((s, q) => (q === pod ? { ...s, expectedUntil: Math.max(s.expectedUntil, at + expectWindowMs(t)) } : s));
}

/** Whether host h of pod `pod`, asking at `at`, is answered, and how; `holdsState`: this host has committed state to give. */
export function serveVerdict(slots: readonly ServeSlot[], pod: number, at: number, holdsState: boolean, t: Topology): ServeVerdict {
  const s = slots[pod];
  if (!s || (holdsState && at > s.expectedUntil)) return { kind: 'reject', reason: 'state request not expected' };
  if (s.answeredAt >= 0 && at - s.answeredAt < answerGapMs(t)) return { kind: 'reject', reason: 'state request too soon' };
  return { kind: holdsState ? 'state' : 'none' };
}

/** The slots once host h of pod `pod` was answered at `at` (nothing of it is left to answer). */
export function slotsAnswered(slots: readonly ServeSlot[], pod: number, at: number): ServeSlot[] {
  return slots.map((s, q) => (q === pod ? { ...s, answeredAt: at, early: undefined } : s));
}

/** The slots once host h of pod `pod` asked (request round `round`, at `at`) before it was said to heal. */
export function slotsAskedEarly(slots: readonly ServeSlot[], pod: number, round: number, at: number): ServeSlot[] {
  return slots.map((s, q) => (q === pod ? { ...s, early: { round, at } } : s));
}

/** The request round to answer now (`at`), as the word that host h of pod `pod` heals has just come: its early request's, if any is due. */
export function earlyRoundDue(slots: readonly ServeSlot[], pod: number, at: number, t: Topology): number | undefined {
  const early = slots[pod]?.early;
  if (!early || at - early.at > t.heartbeat.intervalMs) return undefined;
  return serveVerdict(slots, pod, at, true, t).kind === 'state' ? early.round : undefined;
}
