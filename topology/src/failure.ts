import { z } from 'zod';

/**
 * Why a step attempt, or the run, failed: one typed cause, made by the actor
 * that noticed it (a host, a pod scheduler, the client) and carried as it is
 * from host to pod (`host.failed`), pod to client (`pod.failed`), into the
 * client's failure, the run summary and the error a command exits with.
 * Text is made from it only for people, at the end (`describeFailure`).
 */

/** An actor's name: client, pod/<p> or host/<p>/<h>. */
export const ActorName = z.string().regex(/^(client|pod\/\d{1,6}|host\/\d{1,6}\/\d{1,6})$/, 'must be client, pod/<p> or host/<p>/<h>');

const count = z.number().int().min(0);
const ms = z.number().min(0);
const phase = z.string().max(40);
const text = z.string().max(1000);
const hash = z.string().regex(/^[0-9a-f]{64}$/, 'must be a hex SHA-256');

/** An actor waited for, and the phase it last reported. */
export const Awaited = z.object({ actor: ActorName, lastPhase: phase.optional() }).strict();
export type Awaited = z.infer<typeof Awaited>;

const cause = <K extends string, S extends z.ZodRawShape>(kind: K, shape: S) => z.object({ kind: z.literal(kind), ...shape }).strict();

/** `actor` waited `ms` in `phase` for `waitingFor` (a message kind, a tensor, or `computation`) from `peers`. */
export const DeadlineCause = cause('deadline', {
  actor: ActorName,
  phase,
  ms,
  waitingFor: z.string().max(40),
  peers: z.array(Awaited).max(4096),
});
/** `actor` sent no heartbeat for `ms` (crashed, stalled, cut off); it last said it was in `lastPhase`. */
export const SilentCause = cause('silent', { actor: ActorName, ms, lastPhase: phase });
/** `actor` says it is idle well after the attempt was dispatched to it: it was restarted, or its dispatch was lost. */
export const IdleCause = cause('idle', { actor: ActorName });
/** `actor` was restarted and is healing (fetching the committed state from a peer): the attempt in flight is gone. */
export const HealingCause = cause('healing', { actor: ActorName });
/**
 * `actor` was restarted with no replica of its shard left to heal from; only a
 * checkpoint restore brings it back. `peers`: what each replica holder said
 * (known to the host itself; a pod that sees it in a heartbeat has none).
 */
export const LostCause = cause('lost', {
  actor: ActorName,
  peers: z.array(z.object({ actor: ActorName, said: text }).strict()).max(4096),
});
/** `actor`'s computation in `phase` threw. */
export const ComputeErrorCause = cause('computeError', { actor: ActorName, phase, message: text });
/** The pods prepared the step with different parameter hashes: a bug, not a fault; never retried. */
export const HashMismatchCause = cause('hashMismatch', {
  hashes: z.array(z.object({ pod: count, paramsHash: hash }).strict()).max(4096),
});
/**
 * The run log did not take the commit record: `conflict` (the step is logged
 * with another hash, or a step before it is missing; never retried) or
 * `unavailable` (no answer in time; the attempt is retried).
 */
export const RunLogCause = cause('runLog', { problem: z.enum(['conflict', 'unavailable']), detail: text });
/**
 * A rollback to checkpoint `checkpoint` (-1: the initial parameters) failed:
 * the checkpoint store did not answer (`storeSilent`), `actor` could not read
 * its part (`unreadable`, `detail` says why), or a pod restored parameters
 * whose hash is not the manifest's (`wrongHash`).
 */
export const RestoreCause = cause('restore', {
  checkpoint: z.number().int().min(-1),
  problem: z.enum(['storeSilent', 'unreadable', 'wrongHash']),
  actor: ActorName.optional(),
  paramsHash: z.object({ got: hash, want: hash }).strict().optional(),
  detail: text.optional(),
});
/**
 * At start-up, or before retrying a failed attempt, not every pod said within
 * `ms` that all its hosts are up: each such pod with the hosts it called silent
 * (not heard from, or still joining or healing; none: the pod scheduler itself
 * was not heard from, or a host is lost).
 */
export const PodsNotReadyCause = cause('podsNotReady', {
  ms,
  pods: z.array(z.object({ pod: count, silentHosts: z.array(count).max(4096) }).strict()).max(4096),
});
/** A commit is never taken back: `actor` told `peers` to commit, again and again for `ms`, and they never confirmed it. */
export const CommitNotConfirmedCause = cause('commitNotConfirmed', { actor: ActorName, ms, peers: z.array(Awaited).max(4096) });
/**
 * `actor` got two copies of the same tensor of the attempt (same sender, step, attempt, tensor kind, shard)
 * whose chunk `chunk` differs: one of them is forged or corrupt past its checksum, and which one cannot be
 * told, so the attempt is retried rather than run on the first copy.
 */
export const TensorConflictCause = cause('tensorConflict', {
  actor: ActorName,
  sender: ActorName,
  tensor: z.string().max(40),
  shard: count,
  chunk: count,
});

/** `actor` (a pod scheduler) stopped and sent its final counts while the run was still going: it takes no more steps, so the run ends at once. */
export const StoppedCause = cause('stopped', { actor: ActorName });

export const FailureCause = z.discriminatedUnion('kind', [
  DeadlineCause,
  SilentCause,
  IdleCause,
  HealingCause,
  LostCause,
  ComputeErrorCause,
  HashMismatchCause,
  RunLogCause,
  RestoreCause,
  PodsNotReadyCause,
  CommitNotConfirmedCause,
  TensorConflictCause,
  StoppedCause,
]);
export type FailureCause = z.infer<typeof FailureCause>;
export type FailureKind = FailureCause['kind'];
export const FailureKind = z.enum(FailureCause.options.map((o) => o.shape.kind.value) as [FailureKind, ...FailureKind[]]);
export type CauseOf<K extends FailureKind> = Extract<FailureCause, { kind: K }>;

/** A failure as the client records it: the step attempt, the pod that reported it and the host it relayed it from (absent: found by the client, or by the pod), and the cause. */
export const RunFailure = z
  .object({
    step: count,
    attempt: z.number().int().min(-1),
    pod: count.optional(),
    host: count.optional(),
    cause: FailureCause,
  })
  .strict();
export type RunFailure = z.infer<typeof RunFailure>;

/** A failure in a run summary and in `--json` output: the kind on top (what scripts branch on), the typed failure, and its sentence. */
export const FailureReport = RunFailure.extend({ kind: FailureKind, message: z.string() }).strict();
export type FailureReport = z.infer<typeof FailureReport>;

export function failureReport(f: RunFailure): FailureReport {
  return { kind: f.cause.kind, ...f, message: describeFailure(f) };
}

const peerList = (peers: readonly Awaited[]) =>
  peers.map((p) => (p.lastPhase === undefined ? p.actor : `${p.actor} (last phase ${p.lastPhase})`)).join(', ');

/** One sentence for a cause, naming the actors. */
export function describeCause(c: FailureCause): string {
  switch (c.kind) {
    case 'deadline':
      return `${c.actor}: deadline of ${Math.round(c.ms)} ms exceeded in ${c.phase}: no ${c.waitingFor}${c.peers.length ? ` from ${peerList(c.peers)}` : ''}`;
    case 'silent':
      return `${c.actor} silent for ${Math.round(c.ms)} ms (no heartbeat; last phase ${c.lastPhase})`;
    case 'idle':
      return `${c.actor} is idle in the attempt (restarted, or its dispatch was lost)`;
    case 'healing':
      return `${c.actor} is healing (restarted)`;
    case 'lost':
      return `${c.actor} is lost: restarted with no replica of its shard left${c.peers.length ? ` (${c.peers.map((p) => `${p.actor} ${p.said}`).join('; ')})` : ''}`;
    case 'computeError':
      return `${c.actor}: computation failed in ${c.phase}: ${c.message}`;
    case 'hashMismatch':
      return `parameter hashes differ: ${c.hashes.map((h) => `pod/${h.pod}=${h.paramsHash.slice(0, 12)}`).join(', ')}`;
    case 'runLog':
      return `run log ${c.problem === 'conflict' ? 'refused the commit' : 'unavailable'}: ${c.detail}`;
    case 'restore': {
      const to = c.checkpoint < 0 ? 'the initial parameters' : `checkpoint ${c.checkpoint}`;
      if (c.problem === 'storeSilent') return `restore of ${to}: the checkpoint store did not answer`;
      if (c.problem === 'wrongHash')
        return `restore of ${to}: ${c.actor ?? 'a pod'} restored ${c.paramsHash?.got.slice(0, 12)}, its manifest says ${c.paramsHash?.want.slice(0, 12)}`;
      return `restore of ${to}: ${c.actor ?? 'a host'} could not load it${c.detail ? `: ${c.detail}` : ''}`;
    }
    case 'podsNotReady':
      return `not ready within ${Math.round(c.ms)} ms: ${c.pods
        .map((p) =>
          p.silentHosts.length
            ? `pod/${p.pod} (${p.silentHosts.map((h) => `host/${p.pod}/${h}`).join(', ')} silent)`
            : `pod/${p.pod} (scheduler silent)`,
        )
        .join(', ')}`;
    case 'commitNotConfirmed':
      return `${c.actor}: commit not confirmed within ${Math.round(c.ms)} ms by ${peerList(c.peers)}`;
    case 'tensorConflict':
      return `${c.actor}: two copies of ${c.tensor} shard ${c.shard} from ${c.sender} differ (chunk ${c.chunk})`;
    case 'stopped':
      return `${c.actor} stopped while the run was still going (it takes no more steps)`;
  }
}

/** One sentence for a failure: the step, who reported it, and the cause. */
export function describeFailure(f: RunFailure | undefined): string {
  if (!f) return 'aborted';
  const via =
    f.pod === undefined ? '' : f.host === undefined ? ` (pod/${f.pod} reports)` : ` (pod/${f.pod} reports from host/${f.pod}/${f.host})`;
  return `step ${f.step}${via}: ${describeCause(f.cause)}`;
}
