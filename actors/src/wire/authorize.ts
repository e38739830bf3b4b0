import { kindsOn, parseSender, sendersOn, tensorsOn, type ControlKind, type ParsedSender, type TensorKind } from '@lockstep/topology';

/**
 * Who is receiving, on which of its subjects. Which kinds a channel accepts,
 * and from which role, come from the wire table (`kindsOn`, `sendersOn`,
 * `tensorsOn` in @lockstep/topology); the checks here add which pod and host.
 */
export type Channel =
  | { on: 'client.report'; pods: number }
  | { on: 'pod.cmd'; pod: number }
  | { on: 'pod.report'; pod: number; hosts: number }
  | { on: 'host.cmd'; pod: number; host: number }
  | { on: 'host.data'; pod: number; host: number; pods: number; hosts: number }
  /** Start-up: ping and pong between this host and host h of another pod. */
  | { on: 'host.ping'; pod: number; host: number; pods: number }
  /** Healing: state.request from host h of another pod (it restarted and asks for the committed state). */
  | { on: 'host.state'; pod: number; host: number; pods: number }
  /** Healing: heal.expect from another pod (its host h heals: it may be served). */
  | { on: 'host.expect'; pod: number; host: number; pods: number }
  /** Healing: the committed state (state.params, state.opt chunks, then state.done) or state.none, from host h of another pod. */
  | { on: 'host.heal'; pod: number; host: number; pods: number };

/**
 * Whether `sender` may send `kind` on this channel. Returns undefined when it
 * may, else the detail of a `forged sender` / `wrong subject` rejection.
 */
export function authorize(
  channel: Channel,
  kind: ControlKind | 'tensor.chunk',
  sender: string,
  tensor?: { tensor: TensorKind; shard?: number },
): { reason: string; detail: string } | undefined {
  if (!kindsOn(channel.on).includes(kind)) return { reason: 'wrong subject', detail: `${kind} is not accepted on ${channel.on}` };
  const s = parseSender(sender);
  const forged = (why: string) => ({ reason: 'forged sender', detail: `${kind} from ${sender}: ${why}` });
  if (!s) return forged('not an actor name');
  const expected = sendersOn(channel.on);
  if (!expected.includes(s.role)) return forged(`only a ${expected.join(' or a ')} sends on ${channel.on}`);
  switch (channel.on) {
    case 'client.report':
      return s.role === 'pod' && s.pod < channel.pods ? undefined : forged('no such pod');
    case 'pod.cmd':
      return undefined;
    case 'pod.report':
      return s.role === 'host' && s.pod === channel.pod && s.host < channel.hosts ? undefined : forged(`not a host of pod ${channel.pod}`);
    case 'host.cmd':
      return s.role === 'pod' && s.pod === channel.pod ? undefined : forged(`not pod ${channel.pod}`);
    case 'host.data':
      return kind === 'tensor.request' ? authorizeRequest(channel, s, tensor, forged) : authorizeTensor(channel, s, tensor, forged);
    case 'host.expect':
      // another pod says its host h heals (heal.expect)
      return s.role === 'pod' && s.pod !== channel.pod && s.pod < channel.pods ? undefined : forged('not another pod');
    case 'host.ping':
    case 'host.state':
      // host h of another pod pings, or asks (state.request)
      if (s.role !== 'host' || s.host !== channel.host || s.pod === channel.pod || s.pod >= channel.pods)
        return forged(`not host ${channel.host} of another pod`);
      return undefined;
    case 'host.heal': {
      // only host h of another pod holds a replica of this host's shard: it sends it
      if (s.role !== 'host' || s.host !== channel.host || s.pod === channel.pod || s.pod >= channel.pods) {
        return forged(`not host ${channel.host} of another pod`);
      }
      if (kind === 'tensor.chunk' && !(tensor && tensorsOn(channel.on).includes(tensor.tensor))) {
        return { reason: 'wrong subject', detail: `${tensor?.tensor} is not accepted on ${channel.on}` };
      }
      return undefined;
    }
  }
}

/** A host asks for a tensor again only from the peer that sends it that tensor. */
function authorizeRequest(
  c: Extract<Channel, { on: 'host.data' }>,
  s: ParsedSender,
  t: { tensor: TensorKind } | undefined,
  forged: (why: string) => { reason: string; detail: string },
) {
  if (s.role !== 'host' || !t) return forged('not a host');
  if (s.pod >= c.pods || s.host >= c.hosts) return forged('no such host');
  switch (t.tensor) {
    case 'grad.slice':
    case 'param.shard':
      return s.pod === c.pod && s.host !== c.host ? undefined : forged(`only another host of the same pod asks for ${t.tensor}`);
    case 'grad.exchange':
      return s.pod !== c.pod && s.host === c.host ? undefined : forged('only the same host index of another pod asks for grad.exchange');
    case 'grad.partial':
    case 'param.prefix': // chain: host k + 1 asks host k
      return s.pod === c.pod && s.host === c.host + 1 ? undefined : forged(`only the next host of the same pod asks for ${t.tensor}`);
    case 'grad.reduced':
    case 'param.full': // chain: any other host asks the pod's last host
      return s.pod === c.pod && s.host !== c.host && c.host === c.hosts - 1
        ? undefined
        : forged(`only another host of the same pod asks the last host for ${t.tensor}`);
    default:
      return { reason: 'wrong subject', detail: `${t.tensor} is not asked for on host.data` };
  }
}

function authorizeTensor(
  c: Extract<Channel, { on: 'host.data' }>,
  s: ParsedSender,
  t: { tensor: TensorKind; shard?: number } | undefined,
  forged: (why: string) => { reason: string; detail: string },
) {
  if (s.role !== 'host' || !t) return forged('not a host');
  if (s.pod >= c.pods || s.host >= c.hosts) return forged('no such host');
  switch (t.tensor) {
    case 'grad.slice': // in-pod reduce-scatter: any other host of my pod sends me my shard of its gradient
      if (s.pod !== c.pod || s.host === c.host) return forged('grad.slice comes from another host of the same pod');
      return t.shard === c.host ? undefined : { reason: 'bad shard', detail: `grad.slice for shard ${t.shard} sent to host ${c.host}` };
    case 'grad.exchange': // cross-pod: host h of another pod sends its pod's gradient of shard h
      if (s.pod === c.pod || s.host !== c.host) return forged('grad.exchange comes from the same host index of another pod');
      return t.shard === c.host ? undefined : { reason: 'bad shard', detail: `grad.exchange for shard ${t.shard} sent to host ${c.host}` };
    case 'param.shard': // in-pod all-gather: another host of my pod sends the new shard it owns
      if (s.pod !== c.pod || s.host === c.host) return forged('param.shard comes from another host of the same pod');
      return t.shard === s.host ? undefined : { reason: 'bad shard', detail: `param.shard ${t.shard} sent by host ${s.host}` };
    case 'grad.partial': // chain reduce-scatter: host k - 1 sends host k the running sum of hosts 0..k-1
    case 'param.prefix': // chain all-gather: host k - 1 sends host k the new shards 0..k-1
      if (s.pod !== c.pod || s.host !== c.host - 1) return forged(`${t.tensor} comes from the previous host of the same pod`);
      return t.shard === s.host ? undefined : { reason: 'bad shard', detail: `${t.tensor} ${t.shard} sent by host ${s.host}` };
    case 'grad.reduced': // chain reduce-scatter: the pod's last host sends me my shard of the pod's sum
      if (s.pod !== c.pod || s.host !== c.hosts - 1 || s.host === c.host)
        return forged('grad.reduced comes from the last host of the same pod');
      return t.shard === c.host ? undefined : { reason: 'bad shard', detail: `grad.reduced for shard ${t.shard} sent to host ${c.host}` };
    case 'param.full': // chain all-gather: the pod's last host sends me the whole new parameters
      if (s.pod !== c.pod || s.host !== c.hosts - 1 || s.host === c.host)
        return forged('param.full comes from the last host of the same pod');
      return t.shard === s.host ? undefined : { reason: 'bad shard', detail: `param.full ${t.shard} sent by host ${s.host}` };
    case 'state.params':
    case 'state.opt': // only on a healing host's heal subject, never with step data
      return { reason: 'wrong subject', detail: `${t.tensor} is not accepted on host.data` };
  }
}
