import {
  actorNames,
  type CauseOf,
  shardHash,
  subjects,
  tensorsDigest,
  type Envelope,
  type OptimizerState,
  type ShardRange,
  type StateDone,
} from '@lockstep/topology';
import type { WireCommand } from '../wire/edge.ts';

/**
 * Healing a restarted host from its cross-pod peer. Host h of every pod holds
 * the same committed parameters and the same optimizer state for shard h
 * (that is what lockstep proves at every step), so a host that lost its
 * memory asks host h of another pod for them, through the same edge as every
 * other message:
 *
 *   healing host --state.request (round r)--> host h of pod q (its `state` subject)
 *   host h of q --state.params, state.opt tensors, state.done (round r)--> healing host (its `heal` subject)
 *
 * Host h of q answers only while the healer's own pod says it heals, and at
 * most once per half heartbeat interval (serve.ts says whom, and how often).
 * The healer checks the SHA-256 over everything it got and that its own shard
 * hashes to the committed shard hash its peer reports. A peer that is healing
 * too answers state.none; when every peer says so, no replica is left.
 * These are the pure parts; the states that use them are in host.machine.ts.
 */
export interface CommittedState {
  /** The next step to run. */
  step: number;
  params: Float32Array;
  optState: OptimizerState;
  lastCommitted: { step: number; attempt: number; shardHash: string } | undefined;
}

/** One peer's answer to a healing host, for the request round it is on. */
export interface HealAnswer {
  round: number;
  /** `state.params/0`, `state.opt/<i>` */
  tensors: Map<string, Float32Array>;
  done: StateDone | undefined;
  none: string | undefined;
}

export const freshAnswer = (round: number): HealAnswer => ({ round, tensors: new Map(), done: undefined, none: undefined });

/** The messages host `host` of pod `from` sends to give `state` to host `host` of pod `to` for its request round `round`; `envelope` makes each id. */
export function stateAnswer(
  state: CommittedState,
  o: {
    runId: string;
    host: number;
    from: number;
    to: number;
    round: number;
    envelope: (kind: string, step: number, attempt: number) => Envelope;
  },
): WireCommand[] {
  const subject = subjects.hostHeal(o.runId, o.to, o.host, o.from);
  const tensors = [state.params, ...state.optState];
  const out: WireCommand[] = tensors.map((data, i) => {
    const env = o.envelope(`state.${i}.to${o.to}.r${o.round}`, state.step, o.round);
    return {
      type: 'wire.sendTensor',
      subject,
      head: {
        runId: env.runId,
        step: env.step,
        attempt: env.attempt,
        sender: env.sender,
        msgId: env.msgId,
        tensor: i === 0 ? 'state.params' : 'state.opt',
        shard: Math.max(0, i - 1),
      },
      data,
    };
  });
  const done: StateDone = {
    ...o.envelope(`state.done.to${o.to}.r${o.round}`, state.step, o.round),
    kind: 'state.done',
    reqId: `r${o.round}`,
    lastCommitted: state.lastCommitted ?? null,
    optTensors: state.optState.length,
    sha256: tensorsDigest(tensors),
  };
  out.push({ type: 'wire.send', subject, message: done });
  return out;
}

/**
 * Whether a peer's answer is complete and checks out: undefined while parts
 * are missing, the state when the checksum and the shard hash agree, else why not.
 */
export function checkAnswer(a: HealAnswer, own: ShardRange): { state: CommittedState } | { bad: string } | undefined {
  if (!a.done || a.tensors.size < 1 + a.done.optTensors) return undefined;
  const params = a.tensors.get('state.params/0');
  const optState = Array.from({ length: a.done.optTensors }, (_, i) => a.tensors.get(`state.opt/${i}`));
  if (!params || optState.some((x) => !x)) return undefined;
  const opt = optState as Float32Array[];
  if (tensorsDigest([params, ...opt]) !== a.done.sha256) return { bad: 'failed its checksum' };
  const lc = a.done.lastCommitted;
  if (lc && shardHash(params.subarray(own.start, own.end)) !== lc.shardHash) return { bad: 'does not match its committed shard hash' };
  return { state: { step: a.done.step, params, optState: opt, lastCommitted: lc ?? undefined } };
}

/** Why no peer could heal host `host` of pod `pod`: each peer's own word. */
export function noReplicaLeft(pod: number, host: number, answers: ReadonlyMap<number, HealAnswer>): CauseOf<'lost'> {
  return {
    kind: 'lost',
    actor: actorNames.host(pod, host),
    peers: [...answers].map(([q, a]) => ({ actor: actorNames.host(q, host), said: a.none ?? 'no answer' })),
  };
}
