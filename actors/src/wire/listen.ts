import { parameterCount, shardRange, subjects, type TensorKind, type Topology } from '@lockstep/topology';
import type { Channel } from './authorize.ts';

export type ActorAddress = { role: 'client' } | { role: 'pod'; pod: number } | { role: 'host'; pod: number; host: number };

/** The subjects an actor's edge listens on, each with the channel its messages are checked against. */
export function listenFor(t: Topology, runId: string, a: ActorAddress): { subject: string; channel: Channel }[] {
  switch (a.role) {
    case 'client':
      return [{ subject: subjects.clientReport(runId), channel: { on: 'client.report', pods: t.pods } }];
    case 'pod':
      return [
        { subject: subjects.podCmd(runId, a.pod), channel: { on: 'pod.cmd', pod: a.pod } },
        { subject: subjects.podReport(runId, a.pod), channel: { on: 'pod.report', pod: a.pod, hosts: t.hostsPerPod } },
      ];
    case 'host': {
      const { pod, host } = a;
      return [
        { subject: subjects.hostCmd(runId, pod, host), channel: { on: 'host.cmd', pod, host } },
        { subject: subjects.hostData(runId, pod, host), channel: { on: 'host.data', pod, host, pods: t.pods, hosts: t.hostsPerPod } },
        { subject: subjects.hostPing(runId, pod, host), channel: { on: 'host.ping', pod, host, pods: t.pods } },
        { subject: subjects.hostState(runId, pod, host), channel: { on: 'host.state', pod, host, pods: t.pods } },
        { subject: subjects.hostHeal(runId, pod, host), channel: { on: 'host.heal', pod, host, pods: t.pods } },
      ];
    }
  }
}

/**
 * The element count host `host` accepts for a tensor of `shard`, or undefined
 * when it takes none: its own shard of a gradient (slice, exchange), any
 * shard of the new parameters, and when healing the full parameters
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
      default:
        return shard === host ? lengthOf(shard) : undefined;
    }
  };
}
