import {
  actorNames,
  parameterCount,
  receivePattern,
  shardRange,
  type TensorKind,
  type Topology,
  type WireChannel,
} from '@lockstep/topology';
import type { Channel } from './authorize.ts';

export type ActorAddress = { role: 'client' } | { role: 'pod'; pod: number } | { role: 'host'; pod: number; host: number };

/** An actor's address as its name (`host/0/1`): the `sender` of what it publishes. */
export function actorName(a: ActorAddress): string {
  return a.role === 'client' ? actorNames.client : a.role === 'pod' ? actorNames.pod(a.pod) : actorNames.host(a.pod, a.host);
}

/**
 * The subjects an actor's edge listens on, each with the channel its messages
 * are checked against: its own subjects of each channel it receives on, from
 * any sender (`*` for the sender's tokens; the wire table's `receivePattern`,
 * which is also what its NATS user may subscribe to).
 */
export function listenFor(t: Topology, runId: string, a: ActorAddress): { subject: string; channel: Channel }[] {
  const on = (c: WireChannel) => {
    const subject = receivePattern(c, runId, actorName(a));
    if (subject === undefined) throw new Error(`listenFor: ${actorName(a)} does not receive on ${c}`);
    return subject;
  };
  switch (a.role) {
    case 'client':
      return [{ subject: on('client.report'), channel: { on: 'client.report', pods: t.pods } }];
    case 'pod':
      return [
        { subject: on('pod.cmd'), channel: { on: 'pod.cmd', pod: a.pod } },
        { subject: on('pod.report'), channel: { on: 'pod.report', pod: a.pod, hosts: t.hostsPerPod } },
      ];
    case 'host': {
      const { pod, host } = a;
      return [
        { subject: on('host.cmd'), channel: { on: 'host.cmd', pod, host } },
        { subject: on('host.data'), channel: { on: 'host.data', pod, host, pods: t.pods, hosts: t.hostsPerPod } },
        { subject: on('host.ping'), channel: { on: 'host.ping', pod, host, pods: t.pods } },
        { subject: on('host.state'), channel: { on: 'host.state', pod, host, pods: t.pods } },
        { subject: on('host.expect'), channel: { on: 'host.expect', pod, host, pods: t.pods } },
        { subject: on('host.heal'), channel: { on: 'host.heal', pod, host, pods: t.pods } },
      ];
    }
  }
}

/**
 * The element count host `host` accepts for a tensor of `shard`, or undefined
 * when it takes none: its own shard of a gradient (slice, exchange, reduced), any
 * shard of the new parameters, with `chain` collectives the running sum and the prefix of new shards from the host
 * before it and the whole new parameters from the last host, and when healing the full parameters
 * (state.params, shard 0) and up to four optimizer tensors of its own shard
 * (state.opt, shard = the tensor's index).
 */
export function hostTensorLength(t: Topology, host: number): (tensor: TensorKind, shard: number) => number | undefined {
  const size = parameterCount(t.model);
  const lengthOf = (shard: number) => {
    const r = shardRange(size, t.hostsPerPod, shard);
    return r.end - r.start;
  };
  return (tensor, shard) => {
    switch (tensor) {
      case 'state.params':
        return shard === 0 ? size : undefined;
      case 'state.opt':
        return shard < 4 ? lengthOf(host) : undefined;
      case 'param.shard':
        return shard < t.hostsPerPod ? lengthOf(shard) : undefined;
      case 'grad.partial': // chain: the running sum from host - 1 (the whole vector)
        return shard === host - 1 ? size : undefined;
      case 'param.prefix': // chain: the new shards 0..host-1
        return shard === host - 1 ? shardRange(size, t.hostsPerPod, shard).end : undefined;
      case 'param.full': // chain: the whole new parameters from the last host
        return shard === t.hostsPerPod - 1 && host !== shard ? size : undefined;
      default:
        return shard === host ? lengthOf(shard) : undefined;
    }
  };
}
