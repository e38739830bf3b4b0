import { z } from 'zod';
import * as M from './messages.ts';
import type { TensorKind } from './messages.ts';
import { actorNames, parseSender, subjects } from './subjects.ts';

/**
 * The wire as one table: a row per message kind (every control message, and
 * every tensor that travels as `tensor.chunk` frames) with its schema, the
 * channel it travels on, who sends it to whom, its protocol phase, and its
 * contract; and a row per channel with its subject and who receives and who
 * sends on it. The ControlMessage union, each actor's NATS permissions, the
 * edge's subscriptions and authorization (which kinds a channel accepts, from
 * whom; which sender its subject names), the fault rules' phases and the
 * README's subject table are all derived from it.
 */

/** The roles that publish; each actor's NATS permissions come from its role's routes (see permissions.ts). */
export type Role = 'client' | 'pod' | 'host';
/** Who receives: a role, or an observer (tests, dashboards) that only watches. */
export type Receiver = Role | 'observer';

/**
 * The phase of the step protocol a message belongs to, for fault rules:
 * dispatch (step.dispatch, host.dispatch), the three tensor phases
 * (reduceScatter: grad.slice, or grad.partial and grad.reduced;
 * exchange: grad.exchange; allGather: param.shard, or param.prefix and param.full), prepared (host/pod.prepared), commit (commits and their
 * confirmations), abort (aborts, failures and their confirmations), restore,
 * end. Heartbeats, pings and healing are outside it (`none` in the table).
 */
export const MessagePhase = z.enum(['dispatch', 'reduceScatter', 'exchange', 'allGather', 'prepared', 'commit', 'abort', 'restore', 'end']);
export type MessagePhase = z.infer<typeof MessagePhase>;

// Placeholders that turn the subject functions of subjects.ts into the subject patterns they build:
// the run, the receiver's pod and host, and the sender's pod and host where the receiver's do not say who sent it.
const RUN = '<run>';
const P = '<p>' as unknown as number;
const H = '<h>' as unknown as number;
const SP = '<sp>' as unknown as number;
const SH = '<sh>' as unknown as number;

/** Where messages travel: each channel is one subject per receiver and sender (subjects.ts builds them). */
export interface WireChannelRow {
  /** The subject, with `<run>`, the receiver's `<p>` (pod) and `<h>` (host), and the sender's `<sp>`, `<sh>`. */
  subject: string;
  /** Who the subject belongs to. */
  to: string;
  /** The receiver as an actor name over the subject's placeholders (`host/<p>/<h>`); none for observers. */
  receiver?: string;
  /**
   * The sender as an actor name over the subject's placeholders (`host/<sp>/<sh>`, `pod/<p>`): only that actor may
   * publish on such a subject (its NATS permissions name its own tokens), and a receiver's edge rejects a message
   * whose `sender` is another. Every channel names one: a subject whose receiver's tokens do not say who sent it
   * ends with the sender's (`host.<p>.<h>.ping.<sp>`: host h of pod sp).
   */
  sender: string;
}

export const wireChannels = {
  'client.report': { subject: subjects.clientReport(RUN, SP), to: 'the client', receiver: 'client', sender: actorNames.pod(SP) },
  'pod.cmd': { subject: subjects.podCmd(RUN, P), to: 'pod p', receiver: actorNames.pod(P), sender: 'client' },
  'pod.report': { subject: subjects.podReport(RUN, P, SH), to: 'pod p', receiver: actorNames.pod(P), sender: actorNames.host(P, SH) },
  'host.cmd': { subject: subjects.hostCmd(RUN, P, H), to: 'host h of pod p', receiver: actorNames.host(P, H), sender: actorNames.pod(P) },
  'host.data': {
    subject: subjects.hostData(RUN, P, H, SP, SH),
    to: 'host h of pod p',
    receiver: actorNames.host(P, H),
    sender: actorNames.host(SP, SH),
  },
  'host.ping': {
    subject: subjects.hostPing(RUN, P, H, SP),
    to: 'host h of pod p',
    receiver: actorNames.host(P, H),
    sender: actorNames.host(SP, H),
  },
  'host.state': {
    subject: subjects.hostState(RUN, P, H, SP),
    to: 'host h of pod p',
    receiver: actorNames.host(P, H),
    sender: actorNames.host(SP, H),
  },
  'host.expect': {
    subject: subjects.hostExpect(RUN, P, H, SP),
    to: 'host h of pod p',
    receiver: actorNames.host(P, H),
    sender: actorNames.pod(SP),
  },
  'host.heal': {
    subject: subjects.hostHeal(RUN, P, H, SP),
    to: 'host h of pod p',
    receiver: actorNames.host(P, H),
    sender: actorNames.host(SP, H),
  },
  progress: { subject: subjects.progress(RUN), to: 'observers', sender: 'client' },
} as const satisfies Record<string, WireChannelRow>;
export type WireChannel = keyof typeof wireChannels;

/** One way a message travels: on a channel, from a role, to a role. */
export interface WireRoute {
  on: WireChannel;
  from: Role;
  to: Receiver;
}

export interface WireRow {
  /** The message's schema; for a tensor, the header of each of its `tensor.chunk` frames. */
  schema: z.ZodType;
  /** A JSON control message, or a tensor sent as binary `tensor.chunk` frames (see frame.ts). */
  frame: 'control' | 'tensor.chunk';
  /** Where it travels; most kinds have one route, a few (run.end, ping, pong) several. */
  routes: readonly WireRoute[];
  /** Its protocol phase, for fault rules (`phaseOfKind`); `none` outside the step protocol. */
  phase: MessagePhase | 'none';
  /** When it is sent, whether it is resent, what a repeat does. */
  contract: string;
}

type KindOf<S> = S extends { shape: { kind: z.ZodLiteral<infer K extends string> } } ? K : never;

/** Every control message kind: the `kind` of each message schema messages.ts exports (tensor chunks aside). */
export type ControlKind = Exclude<{ [N in keyof typeof M]: KindOf<(typeof M)[N]> }[keyof typeof M], 'tensor.chunk'>;
export type WireKind = ControlKind | TensorKind;

/** What the table must hold: a row for every kind, and a control row's schema is the one for its kind. */
export type WireTable = {
  [K in WireKind]: WireRow &
    (K extends TensorKind
      ? { frame: 'tensor.chunk'; schema: typeof M.TensorChunkHeader }
      : { frame: 'control'; schema: { shape: { kind: z.ZodLiteral<K> } } });
};

const fromClient = { on: 'pod.cmd', from: 'client', to: 'pod' } as const;
const fromPod = { on: 'host.cmd', from: 'pod', to: 'host' } as const;
const toPod = { on: 'pod.report', from: 'host', to: 'pod' } as const;
const toClient = { on: 'client.report', from: 'pod', to: 'client' } as const;
const peerData = { on: 'host.data', from: 'host', to: 'host' } as const;
const heal = { on: 'host.heal', from: 'host', to: 'host' } as const;

export const wireTable = {
  // client -> pod
  'step.dispatch': {
    schema: M.StepDispatch,
    frame: 'control',
    routes: [fromClient],
    phase: 'dispatch',
    contract:
      'Starts attempt a of step s on a pod: its share of the batch, the last step committed. Once per attempt; up to dispatch.depth steps in flight, s+1 as soon as s went (a retry resends those after it as attempt a+1). A newer attempt supersedes older ones; a repeat or an older one is rejected.',
  },
  'step.commit': {
    schema: M.StepCommit,
    frame: 'control',
    routes: [fromClient],
    phase: 'commit',
    contract:
      'Every pod prepared the same hash and the run log holds the step; resent every heartbeat interval (up to recovery.maxResends) until every pod confirms. A repeat is relayed to the hosts again; one for the step already committed is confirmed again.',
  },
  'step.abort': {
    schema: M.StepAbort,
    frame: 'control',
    routes: [fromClient],
    phase: 'abort',
    contract:
      "The attempt failed (hashes differ, a pod failed, a deadline passed): it takes every later step in flight with it. Sent once, as the next attempt's dispatch supersedes it anyway. A pod with nothing of the attempt confirms it.",
  },
  'run.end': {
    schema: M.RunEnd,
    frame: 'control',
    routes: [fromClient, fromPod],
    phase: 'end',
    contract:
      'The run is over: sent once by the client to every pod, and relayed once by each pod to its hosts; each stops and reports its counts once.',
  },
  'run.restore': {
    schema: M.RunRestore,
    frame: 'control',
    routes: [fromClient],
    phase: 'restore',
    contract:
      'Every replica of some shard is gone: roll back to checkpoint `checkpoint` (-1: the initial parameters); resent every heartbeat interval to pods that have not confirmed. A repeat of the same checkpoint is ignored; another checkpoint starts the restore over.',
  },
  // pod -> host
  'host.dispatch': {
    schema: M.HostDispatch,
    frame: 'control',
    routes: [fromPod],
    phase: 'dispatch',
    contract:
      "Gang-schedules a step attempt: to every host, its samples and the pod's last commit; once per attempt. A host queues them in step order, each starting once the step before is prepared, on its parameters. A newer attempt drops what the host holds of older ones; a repeat or an older one is rejected.",
  },
  'host.commit': {
    schema: M.HostCommit,
    frame: 'control',
    routes: [fromPod],
    phase: 'commit',
    contract:
      "Adopt the oldest prepared step's parameters (commits come in step order): relayed on each step.commit, and resent every heartbeat interval to hosts that have not confirmed. A repeat for the step already committed is confirmed again.",
  },
  'host.abort': {
    schema: M.HostAbort,
    frame: 'control',
    routes: [fromPod],
    phase: 'abort',
    contract:
      'Drop the attempt and every later step of it or an older attempt, prepared or in flight (the committed parameters were never touched); resent every heartbeat interval to hosts that have not confirmed. A host with nothing of the attempt confirms it.',
  },
  'host.restore': {
    schema: M.HostRestore,
    frame: 'control',
    routes: [fromPod],
    phase: 'restore',
    contract:
      'Load checkpoint `checkpoint` (-1: the initial state), dropping whatever the host was doing; resent every heartbeat interval to hosts that have not confirmed. Each one received starts the load over.',
  },
  // host -> pod
  'host.heartbeat': {
    schema: M.HostHeartbeat,
    frame: 'control',
    routes: [toPod],
    phase: 'none',
    contract:
      'Every heartbeat.intervalMs: alive, and in which phase (or idle, prepared, failed, lost). Never resent; silence for `misses` intervals fails the attempt.',
  },
  'host.prepared': {
    schema: M.HostPrepared,
    frame: 'control',
    routes: [toPod],
    phase: 'prepared',
    contract:
      "The host holds its new shard (hash, loss, phase times, how long it waited for the dispatch); resent on each heartbeat an interval or more after it was prepared, until that step's commit or abort. A repeat is counted as a duplicate.",
  },
  'host.committed': {
    schema: M.HostCommitted,
    frame: 'control',
    routes: [toPod],
    phase: 'commit',
    contract: 'Confirms host.commit with the committed shard hash: once on committing, and again for every repeated commit of that step.',
  },
  'host.aborted': {
    schema: M.HostAborted,
    frame: 'control',
    routes: [toPod],
    phase: 'abort',
    contract: 'Confirms host.abort: once for each abort of this step received.',
  },
  'host.failed': {
    schema: M.HostFailed,
    frame: 'control',
    routes: [toPod],
    phase: 'abort',
    contract:
      "The attempt failed on this host: its typed cause (a deadline, naming the peers waited for; a computation error); sent once, then the host waits for the pod's abort.",
  },
  'host.restored': {
    schema: M.HostRestored,
    frame: 'control',
    routes: [toPod],
    phase: 'restore',
    contract: "Confirms host.restore with the restored shard's hash: once for each load.",
  },
  'host.stopped': {
    schema: M.HostStopped,
    frame: 'control',
    routes: [toPod],
    phase: 'end',
    contract: "Answers run.end with the host's rejection, duplicate and fault counts; sent once.",
  },
  // pod -> client
  'pod.prepared': {
    schema: M.PodPrepared,
    frame: 'control',
    routes: [toClient],
    phase: 'prepared',
    contract:
      "Every host of the pod prepared the step it commits next: the pod's parameter hash, shard hashes, loss, slowest phase times and the hosts' mean wait for the dispatch; resent every heartbeat interval until the client's commit or abort. A repeat is counted as a duplicate.",
  },
  'pod.committed': {
    schema: M.PodCommitted,
    frame: 'control',
    routes: [toClient],
    phase: 'commit',
    contract: 'Every host committed: sent once, and again for a repeated step.commit of the step already committed.',
  },
  'pod.aborted': {
    schema: M.PodAborted,
    frame: 'control',
    routes: [toClient],
    phase: 'abort',
    contract: 'Every host confirmed the abort (or the pod never ran the attempt): sent once for each abort.',
  },
  'pod.failed': {
    schema: M.PodFailed,
    frame: 'control',
    routes: [toClient],
    phase: 'abort',
    contract:
      "The attempt failed in this pod: a host's cause as it reported it, or the pod's own (a host silent, idle, healing or lost; a deadline); sent once.",
  },
  'pod.restored': {
    schema: M.PodRestored,
    frame: 'control',
    routes: [toClient],
    phase: 'restore',
    contract:
      "Every host restored the checkpoint: the pod's parameter hash, checked against the checkpoint's manifest; sent once for each restore.",
  },
  'pod.heartbeat': {
    schema: M.PodHeartbeat,
    frame: 'control',
    routes: [toClient],
    phase: 'none',
    contract:
      'Every heartbeat.intervalMs: alive, its phase, whether a step dispatched now can run, its silent and lost hosts. Never resent.',
  },
  'pod.stopped': {
    schema: M.PodStopped,
    frame: 'control',
    routes: [toClient],
    phase: 'end',
    contract: "Answers run.end with the pod's and its hosts' counts; sent once.",
  },
  // start-up: a host and host h of every other pod reach each other across the route (the DCN)
  ping: {
    schema: M.Ping,
    frame: 'control',
    routes: [{ on: 'host.ping', from: 'host', to: 'host' }],
    phase: 'none',
    contract:
      'A joining host to host h of every other pod, again every heartbeat interval until it answers: its answer proves the route carries both ways before any tensor does.',
  },
  pong: {
    schema: M.Pong,
    frame: 'control',
    routes: [{ on: 'host.ping', from: 'host', to: 'host' }],
    phase: 'none',
    contract: "Answers every ping, in any state, on the asker's ping subject; a repeat is answered again and ignored once joined.",
  },
  // observers
  'step.committed': {
    schema: M.StepCommitted,
    frame: 'control',
    routes: [{ on: 'progress', from: 'client', to: 'observer' }],
    phase: 'none',
    contract: 'One per committed step (loss, hash, whether the pods agree, ms), for observers; never resent, and no actor reads it.',
  },
  // between hosts
  'tensor.request': {
    schema: M.TensorRequest,
    frame: 'control',
    routes: [peerData],
    phase: 'none',
    contract:
      'A host waiting on a tensor asks the peer that sends it for it again, every request delay; `round` gives each ask its own ids. The peer sends it again once it has got that far.',
  },
  'grad.slice': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'reduceScatter',
    contract:
      "In-pod reduce-scatter: a host sends every other host of its pod that host's shard of its gradient; once per attempt, and again on each tensor.request. A repeated chunk is dropped.",
  },
  'grad.exchange': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'exchange',
    contract:
      "Cross-pod: host h sends host h of every other pod its pod's gradient of shard h; once per attempt, and again on each tensor.request. A repeated chunk is dropped.",
  },
  'param.shard': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'allGather',
    contract:
      'In-pod all-gather: a host sends every other host of its pod the new shard it owns; once per attempt, and again on each tensor.request. A repeated chunk is dropped.',
  },
  'grad.partial': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'reduceScatter',
    contract:
      "In-pod reduce-scatter, `collectives.inPod: chain`: host k sends host k+1 the running sum of hosts 0..k's gradients in host order (the whole vector; shard = k); once per attempt, and again on each tensor.request.",
  },
  'grad.reduced': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'reduceScatter',
    contract:
      "In-pod reduce-scatter, `chain`: the pod's last host, which holds the pod's sum, sends host h its shard of it (shard = h); once per attempt, and again on each tensor.request.",
  },
  'param.prefix': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'allGather',
    contract:
      'In-pod all-gather, `chain`: host k sends host k+1 the new parameters of shards 0..k (shard = k); once per attempt, and again on each tensor.request.',
  },
  'param.full': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [peerData],
    phase: 'allGather',
    contract:
      "In-pod all-gather, `chain`: the pod's last host sends every other host the whole new parameters (shard = the last host); once per attempt, and again on each tensor.request.",
  },
  // healing a restarted host from host h of another pod
  'heal.expect': {
    schema: M.HealExpect,
    frame: 'control',
    routes: [{ on: 'host.expect', from: 'pod', to: 'host' }],
    phase: 'none',
    contract:
      "Pod p's host h says it heals: pod p tells host h of every other pod, on each such heartbeat. That host may serve host h of pod p its state until heartbeat.misses intervals after the last one; none is answered.",
  },
  'state.request': {
    schema: M.StateRequest,
    frame: 'control',
    routes: [{ on: 'host.state', from: 'host', to: 'host' }],
    phase: 'none',
    contract:
      "A restarted host (or one told of a step past what it holds) asks host h of every other pod for its state, again every heartbeat interval until answered. Served only while the asker's pod says it heals (heal.expect), once per half interval per asker; the rest is rejected and counted.",
  },
  'state.params': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [heal],
    phase: 'none',
    contract: "The peer's committed parameters, in answer to a state.request it serves; once per answer.",
  },
  'state.opt': {
    schema: M.TensorChunkHeader,
    frame: 'tensor.chunk',
    routes: [heal],
    phase: 'none',
    contract: "The peer's optimizer state for shard h, after state.params; once per answer.",
  },
  'state.done': {
    schema: M.StateDone,
    frame: 'control',
    routes: [heal],
    phase: 'none',
    contract: "Closes one answer's state.params and state.opt: the last committed step and a SHA-256 over them; once per answer.",
  },
  'state.none': {
    schema: M.StateNone,
    frame: 'control',
    routes: [heal],
    phase: 'none',
    contract:
      'The peer holds no state it can give (it is healing too); to any asker, at most once per half interval each. When every peer says so, no replica is left.',
  },
} as const satisfies WireTable;

export const wireKinds = Object.keys(wireTable) as WireKind[];
const rows = Object.entries(wireTable) as [WireKind, WireRow][];
const controlRows = rows.filter((r): r is [ControlKind, WireRow] => r[1].frame === 'control');

type ControlSchema = (typeof wireTable)[ControlKind]['schema'];
/** Every control message, by its `kind`. */
export const ControlMessage = z.discriminatedUnion('kind', controlRows.map(([, r]) => r.schema) as [ControlSchema, ...ControlSchema[]]);
export type ControlMessage = z.infer<typeof ControlMessage>;
export type MessageOf<K extends ControlKind> = Extract<ControlMessage, { kind: K }>;

const channelNames = Object.keys(wireChannels) as WireChannel[];
const uniq = <T>(xs: T[]): T[] => [...new Set(xs)];
const routesOn = (c: WireChannel) => rows.flatMap(([kind, row]) => row.routes.filter((r) => r.on === c).map((r) => ({ kind, row, ...r })));

const byChannel = Object.fromEntries(
  channelNames.map((c) => {
    const on = routesOn(c);
    return [
      c,
      {
        kinds: uniq(on.map((r) => (r.row.frame === 'control' ? (r.kind as ControlKind) : ('tensor.chunk' as const)))),
        tensors: uniq(on.filter((r) => r.row.frame === 'tensor.chunk').map((r) => r.kind as TensorKind)),
        senders: uniq(on.map((r) => r.from)),
        receivers: uniq(on.map((r) => r.to)),
      },
    ];
  }),
) as Record<WireChannel, { kinds: (ControlKind | 'tensor.chunk')[]; tensors: TensorKind[]; senders: Role[]; receivers: Receiver[] }>;

/** The frame kinds a channel accepts: each control kind routed on it, and `tensor.chunk` when a tensor is. */
export function kindsOn(c: WireChannel): readonly (ControlKind | 'tensor.chunk')[] {
  return byChannel[c].kinds;
}

/** The tensors whose chunks travel on a channel. */
export function tensorsOn(c: WireChannel): readonly TensorKind[] {
  return byChannel[c].tensors;
}

/** The roles that send on a channel. */
export function sendersOn(c: WireChannel): readonly Role[] {
  return byChannel[c].senders;
}

/** The roles that receive on a channel. */
export function receiversOn(c: WireChannel): readonly Receiver[] {
  return byChannel[c].receivers;
}

/** The channels a role sends on, or receives on, in table order. */
export function channelsOf(role: Receiver, way: 'sends' | 'receives'): WireChannel[] {
  return channelNames.filter((c) => (way === 'sends' ? (byChannel[c].senders as Receiver[]) : byChannel[c].receivers).includes(role));
}

const rowOf = (c: WireChannel): WireChannelRow => wireChannels[c];
const PLACEHOLDER = /^<[a-z]+>$/;

/**
 * The placeholders of a template actor name (`host/<sp>/<sh>`) that make it
 * `actor` (`host/0/1`: sp=0, sh=1), or undefined when `actor` is not of its form.
 */
function bind(template: string, actor: string): Record<string, string> | undefined {
  const want = template.split('/');
  const got = actor.split('/');
  if (want.length !== got.length) return undefined;
  const out: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (!PLACEHOLDER.test(want[i])) {
      if (want[i] !== got[i]) return undefined;
    } else if (!/^\d{1,6}$/.test(got[i]) || (out[want[i]] !== undefined && out[want[i]] !== got[i])) return undefined;
    else out[want[i]] = got[i];
  }
  return out;
}

/** A subject with its placeholders as a NATS pattern for run `run`: each bound one as given, every other one `*`. */
function fill(subject: string, run: string, bound: Record<string, string> = {}): string {
  return subject
    .split('.')
    .map((t) => (t === RUN ? run : PLACEHOLDER.test(t) ? (bound[t] ?? '*') : t))
    .join('.');
}

/** The NATS subject pattern of a channel in run `run`: every receiver and sender (`*`) of it. */
export function channelPattern(c: WireChannel, run: string): string {
  return fill(wireChannels[c].subject, run);
}

/**
 * The subjects of channel `c` actor `actor` may publish on in run `run`: its
 * own sender tokens, any receiver (`*`) its tokens do not fix (host/0/1's data
 * goes to `host.*.*.data.0.1`, its reports only to `pod.0.report.1`). Undefined
 * when the actor does not send on `c`.
 */
export function sendPattern(c: WireChannel, run: string, actor: string): string | undefined {
  const role = parseSender(actor)?.role;
  if (!role || !sendersOn(c).includes(role)) return undefined;
  const bound = bind(rowOf(c).sender, actor);
  return bound && fill(wireChannels[c].subject, run, bound);
}

/**
 * The subjects of channel `c` actor `actor` receives on in run `run`: its own
 * receiver tokens, every sender (`*`): what its edge subscribes to, and what it
 * may. Undefined when the actor does not receive on `c`.
 */
export function receivePattern(c: WireChannel, run: string, actor: string): string | undefined {
  const role = parseSender(actor)?.role;
  if (!role || !receiversOn(c).includes(role)) return undefined;
  const template = rowOf(c).receiver;
  if (template === undefined) return channelPattern(c, run);
  const bound = bind(template, actor);
  return bound && fill(wireChannels[c].subject, run, bound);
}

/** How many subjects a `subjectSender` remembers the sender of. */
const SENDERS_KEPT = 256;

/**
 * Who a subject of channel `c` says sent a message: the channel's sender filled
 * from the subject's tokens (`lockstep.r.host.0.1.data.1.0` -> `host/1/0`), or
 * undefined for a subject not of the channel's form. Made once per receiver: it remembers the senders of the last `SENDERS_KEPT` subjects it
 * read (a receiver hears a few senders over and over), so most calls only look
 * one up.
 */
export function subjectSender(c: WireChannel): (subject: string) => string | undefined {
  const template = rowOf(c).sender;
  const tokens = wireChannels[c].subject.split('.');
  const parts = template.split('/').map((x) => (PLACEHOLDER.test(x) ? tokens.indexOf(x) : x));
  const read = (subject: string) => {
    const t = subject.split('.');
    if (t.length !== tokens.length) return undefined;
    return parts.map((x) => (typeof x === 'number' ? t[x] : x)).join('/');
  };
  const known = new Map<string, string | undefined>();
  return (subject) => {
    const hit = known.get(subject);
    if (hit !== undefined || known.has(subject)) return hit;
    if (known.size >= SENDERS_KEPT) known.clear();
    const sender = read(subject);
    known.set(subject, sender);
    return sender;
  };
}

/**
 * Subject trees a permission may name whole: a host's own subjects
 * (subjects.hostAll). An actor that receives on every channel in a tree may
 * subscribe to its own tree as one permission (`host.0.1.>`) instead of a
 * permission per channel.
 */
export const wireTrees = { host: { subject: subjects.hostAll(RUN, P, H), receiver: actorNames.host(P, H) } } as const;

const subjectUnder = (tree: string, subject: string) => tree.endsWith('.>') && subject.startsWith(tree.slice(0, -1));

/** The channels whose subjects lie in a tree. */
export function channelsIn(tree: keyof typeof wireTrees): WireChannel[] {
  return channelNames.filter((c) => subjectUnder(wireTrees[tree].subject, wireChannels[c].subject));
}

/** The NATS pattern of a tree in run `run`: every receiver's, or the one `actor` receives on. */
export function treePattern(tree: keyof typeof wireTrees, run: string, actor?: string): string | undefined {
  const { subject, receiver } = wireTrees[tree];
  if (actor === undefined) return fill(subject, run);
  const bound = bind(receiver, actor);
  return bound && fill(subject, run, bound);
}

/** The protocol phase of a message or tensor kind (undefined for kinds outside the step protocol, or unknown). */
export function phaseOfKind(kind: string): MessagePhase | undefined {
  if (!Object.hasOwn(wireTable, kind)) return undefined;
  const phase = wireTable[kind as WireKind].phase;
  return phase === 'none' ? undefined : phase;
}
