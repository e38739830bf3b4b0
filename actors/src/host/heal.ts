import { randomBytes } from 'node:crypto';
import type { Subscription } from '@nats-io/transport-node';
import {
  actorNames,
  decodeControl,
  decodeTensorChunk,
  encodeControl,
  encodeTensor,
  isTensorFrame,
  parameterCount,
  parseSender,
  shardHash,
  shardRange,
  subjects,
  tensorsDigest,
  type OptimizerState,
  type StateDone,
} from '@lockstep/topology';
import { TensorAssembler } from '../wire/assembler.ts';
import type { HostAddress } from './address.ts';

/**
 * Healing a restarted host from its cross-pod peer. Host h of every pod holds
 * the same committed parameters and the same optimizer state for shard h
 * (that is what lockstep proves at every step), so a host that lost its
 * memory asks host h of another pod for them:
 *
 *   healing host --state.request--> host h of pod q (on q's `state` subject)
 *   host h of q --state.params, state.opt tensors, state.done--> healing host (its `heal` subject)
 *
 * The healer checks the SHA-256 over everything it got and that its own shard
 * hashes to the committed shard hash its peer reports. A peer that is healing
 * too answers state.none; when every peer says so, no replica is left.
 */
export interface CommittedState {
  /** The next step to run. */
  step: number;
  params: Float32Array;
  optState: OptimizerState;
  lastCommitted: { step: number; attempt: number; shardHash: string } | undefined;
}

/** Answer state requests from host h of other pods. `state` resolves once the committed state is stable (not awaiting a commit), or to why there is none. */
export function serveState(opts: HostAddress & { state: () => Promise<CommittedState | string> }): Subscription {
  const { nc, topology: t, runId, pod, host } = opts;
  const me = actorNames.host(pod, host);
  const served = new Set<string>();
  return nc.subscribe(subjects.hostState(runId, pod, host), {
    callback: (_err, m) => {
      const d = decodeControl(m.data, t.wire.maxControlBytes);
      if (!d.ok || d.value.kind !== 'state.request' || d.value.runId !== runId)
        return opts.log.warn({ reason: d.ok ? `unexpected ${d.value.kind}` : d.reason }, 'state request rejected');
      const req = d.value;
      const s = parseSender(req.sender);
      if (!s || s.role !== 'host' || s.host !== host || s.pod === pod || s.pod >= t.pods)
        return opts.log.warn({ sender: req.sender }, 'state request rejected: not host h of another pod');
      if (served.has(req.reqId)) return; // a repeat of a request already answered
      served.add(req.reqId);
      const to = subjects.hostHeal(runId, s.pod, host);
      void opts.state().then(
        (state) => {
          const env = (kind: string, step: number) => ({
            v: 1 as const,
            runId,
            step,
            attempt: 0,
            sender: me,
            msgId: `${me}/${kind}/${req.reqId}`,
          });
          if (typeof state === 'string') {
            nc.publish(to, encodeControl({ ...env('state.none', 0), kind: 'state.none', reqId: req.reqId, reason: state }));
            return;
          }
          const tensors = [state.params, ...state.optState];
          tensors.forEach((data, i) => {
            const head = {
              ...env(`state.${i}`, state.step),
              kind: 'tensor.chunk' as const,
              tensor: i === 0 ? ('state.params' as const) : ('state.opt' as const),
              shard: Math.max(0, i - 1),
            };
            for (const f of encodeTensor(head, data, t.wire.chunkBytes)) nc.publish(to, f);
          });
          const done: StateDone = {
            ...env('state.done', state.step),
            kind: 'state.done',
            reqId: req.reqId,
            lastCommitted: state.lastCommitted ?? null,
            optTensors: state.optState.length,
            sha256: tensorsDigest(tensors),
          };
          nc.publish(to, encodeControl(done));
          opts.log.info(
            { to: req.sender, step: state.step, bytes: tensors.reduce((n, x) => n + x.byteLength, 0) },
            'state sent to a healing peer',
          );
        },
        (err) => opts.log.warn({ err }, 'state not served'),
      );
    },
  });
}

export type HealResult = { ok: true; state: CommittedState; from: string } | { ok: false; reason: string };

/**
 * Ask host h of every other pod for its committed state, repeating the
 * request every heartbeat interval to peers that have not answered, until
 * one delivers a state that checks out, every peer says it has none, or
 * `deadlineMs` passes.
 */
export async function fetchState(opts: HostAddress & { deadlineMs: number }): Promise<HealResult> {
  const { nc, topology: t, runId, pod, host } = opts;
  const me = actorNames.host(pod, host);
  const size = parameterCount(t.model);
  const own = shardRange(size, t.hostsPerPod, host);
  const shardLength = own.end - own.start;
  const peers = Array.from({ length: t.pods }, (_, q) => q).filter((q) => q !== pod);
  if (peers.length === 0) return { ok: false, reason: 'no other pod holds a replica' };

  interface Pending {
    reqId: string;
    assembler: TensorAssembler;
    tensors: Map<string, Float32Array>;
    done: StateDone | undefined;
    none: string | undefined;
  }
  const fresh = (): Pending => ({
    reqId: randomBytes(6).toString('hex'),
    assembler: new TensorAssembler((tensor, shard) =>
      tensor === 'state.params' && shard === 0 ? size : tensor === 'state.opt' && shard < 4 ? shardLength : undefined,
    ),
    tensors: new Map(),
    done: undefined,
    none: undefined,
  });
  const pending = new Map(peers.map((q) => [q, fresh()]));
  let settle: (r: HealResult) => void = () => {};
  const result = new Promise<HealResult>((res) => (settle = res));

  const check = (q: number, p: Pending) => {
    if (!p.done) return;
    const n = 1 + p.done.optTensors;
    if (p.tensors.size < n) return;
    const params = p.tensors.get('state.params/0')!;
    const optState = Array.from({ length: p.done.optTensors }, (_, i) => p.tensors.get(`state.opt/${i}`)!);
    const peer = actorNames.host(q, host);
    if (optState.some((x) => !x) || tensorsDigest([params, ...optState]) !== p.done.sha256) {
      opts.log.warn({ peer }, 'state from peer failed its checksum; asking again');
      pending.set(q, fresh());
      return;
    }
    const lc = p.done.lastCommitted;
    if (lc && shardHash(params.subarray(own.start, own.end)) !== lc.shardHash) {
      opts.log.warn({ peer }, 'state from peer does not match its committed shard hash; asking again');
      pending.set(q, fresh());
      return;
    }
    settle({ ok: true, from: peer, state: { step: p.done.step, params, optState, lastCommitted: lc ?? undefined } });
  };

  const sub = nc.subscribe(subjects.hostHeal(runId, pod, host), {
    callback: (_err, m) => {
      const bytes = m.data;
      if (isTensorFrame(bytes)) {
        const d = decodeTensorChunk(bytes);
        if (!d.ok) return opts.log.warn({ reason: d.reason, detail: d.detail }, 'state chunk rejected');
        const s = parseSender(d.value.header.sender);
        if (!s || s.role !== 'host' || s.host !== host || !pending.has(s.pod)) return;
        const p = pending.get(s.pod)!;
        if (!d.value.header.msgId.includes(`/${p.reqId}`)) return; // an answer to an earlier request
        const r = p.assembler.add(d.value);
        if (r.kind === 'rejected') return opts.log.warn({ reason: r.reason, detail: r.detail }, 'state chunk rejected');
        if (r.kind === 'complete') p.tensors.set(`${r.tensor.tensor}/${r.tensor.shard}`, r.tensor.data);
        return check(s.pod, p);
      }
      const d = decodeControl(bytes, t.wire.maxControlBytes);
      if (!d.ok || d.value.runId !== runId) return;
      const msg = d.value;
      if (msg.kind !== 'state.done' && msg.kind !== 'state.none') return;
      const s = parseSender(msg.sender);
      if (!s || s.role !== 'host' || s.host !== host || !pending.has(s.pod)) return;
      const p = pending.get(s.pod)!;
      if (msg.reqId !== p.reqId) return;
      if (msg.kind === 'state.none') {
        p.none = msg.reason;
        if ([...pending.values()].every((x) => x.none !== undefined)) {
          settle({
            ok: false,
            reason: `no replica of shard ${host} left: ${peers.map((x) => `${actorNames.host(x, host)} ${pending.get(x)!.none}`).join('; ')}`,
          });
        }
        return;
      }
      p.done = msg;
      check(s.pod, p);
    },
  });
  const ask = () => {
    for (const [q, prev] of pending) {
      if (prev.none !== undefined) continue;
      // a state.done comes after its tensors (one publisher, one subject): done but incomplete means chunks were lost
      const p = prev.done ? fresh() : prev;
      pending.set(q, p);
      const req = {
        v: 1 as const,
        runId,
        step: 0,
        attempt: 0,
        sender: me,
        msgId: `${me}/state.request/${p.reqId}/${Date.now()}`,
        kind: 'state.request' as const,
        reqId: p.reqId,
      };
      try {
        nc.publish(subjects.hostState(runId, q, host), encodeControl(req));
      } catch (err) {
        opts.log.warn({ err }, 'state request not sent');
      }
    }
  };
  ask();
  const timer = setInterval(ask, t.heartbeat.intervalMs);
  const deadline = setTimeout(
    () =>
      settle({
        ok: false,
        reason: `no peer delivered the state of shard ${host} within ${opts.deadlineMs} ms (asked ${peers.map((q) => actorNames.host(q, host)).join(', ')})`,
      }),
    opts.deadlineMs,
  );
  try {
    return await result;
  } finally {
    clearInterval(timer);
    clearTimeout(deadline);
    sub.unsubscribe();
  }
}
