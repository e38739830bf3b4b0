import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as messages from '../src/messages.ts';
import {
  ControlMessage,
  MessagePhase,
  TensorChunkHeader,
  TensorKind,
  TensorRequest,
  WIRE_DOC_END,
  WIRE_DOC_START,
  channelPattern,
  channelsIn,
  channelsOf,
  kindsOn,
  actorPermissions,
  identityPermissions,
  processKey,
  observerPermissions,
  parseSender,
  phaseOfKind,
  receivePattern,
  receiversOn,
  renderWireDoc,
  sendPattern,
  sendersOn,
  spliceWireDoc,
  subjectMatches,
  subjectSender,
  subjects,
  tensorsOn,
  wireChannels,
  wireKinds,
  wireTable,
  type ControlKind,
  type WireChannel,
  type WireChannelRow,
  type WireKind,
  type WireRow,
  type WireTable,
} from '../src/index.ts';

const rows = Object.entries(wireTable) as [WireKind, WireRow][];
const channelNames = Object.keys(wireChannels) as WireChannel[];

/** The `kind` literal of every message schema messages.ts exports (the tensor chunk header aside). */
const declaredKinds = Object.values(messages)
  .map((v) => (v as { shape?: { kind?: { value?: unknown } } }).shape?.kind?.value)
  .filter((k): k is string => typeof k === 'string' && k !== 'tensor.chunk');

describe('the wire table', () => {
  it('has a row for every message schema in messages.ts and every tensor kind, and nothing else', () => {
    expect(declaredKinds.length).toBeGreaterThan(25);
    expect(new Set(wireKinds)).toEqual(new Set([...declaredKinds, ...TensorKind.options]));
    expect(wireKinds.length).toBe(declaredKinds.length + TensorKind.options.length);
  });

  it("a control row's schema is its kind's; a tensor row's is the chunk header", () => {
    for (const [kind, row] of rows) {
      if (row.frame === 'control')
        expect((row.schema as unknown as { shape: { kind: { value: string } } }).shape.kind.value, kind).toBe(kind);
      else {
        expect(TensorKind.options, kind).toContain(kind);
        expect(row.schema, kind).toBe(TensorChunkHeader);
      }
    }
  });

  it('a table without a row does not type-check', () => {
    const { 'host.commit': _, ...missing } = wireTable;
    // @ts-expect-error host.commit has no row
    const table: WireTable = missing;
    expect(Object.keys(table)).not.toContain('host.commit');
  });

  it('ControlMessage is the union of exactly the control rows', () => {
    const unionKinds = ControlMessage.options.map((o) => o.shape.kind.value);
    expect(new Set(unionKinds)).toEqual(new Set(declaredKinds));
    expect(unionKinds).toHaveLength(declaredKinds.length);
    const env = { v: 1, runId: 'r', step: 0, attempt: 0, sender: 'client', msgId: 'm' };
    expect(ControlMessage.safeParse({ ...env, kind: 'step.commit' }).success).toBe(true);
    expect(ControlMessage.safeParse({ ...env, kind: 'tensor.chunk' }).success).toBe(false);
    expect(ControlMessage.safeParse({ ...env, kind: 'grad.slice' }).success).toBe(false);
  });

  it('every row travels somewhere, with a one-line contract', () => {
    for (const [kind, row] of rows) {
      expect(row.routes.length, kind).toBeGreaterThan(0);
      expect(row.contract, kind).toMatch(/^[^\n|]{20,300}$/);
    }
  });

  it("each channel's kinds are exactly those whose row names it, and every channel carries something", () => {
    for (const c of channelNames) {
      const named = rows.filter(([, r]) => r.routes.some((x) => x.on === c));
      expect(named.length, c).toBeGreaterThan(0);
      const frames = new Set(named.map(([k, r]) => (r.frame === 'control' ? k : 'tensor.chunk')));
      expect(new Set(kindsOn(c)), c).toEqual(frames);
      expect(new Set(tensorsOn(c)), c).toEqual(new Set(named.filter(([, r]) => r.frame === 'tensor.chunk').map(([k]) => k)));
    }
  });

  it('the edge channels accept what they accepted before the table, and a pod says on host.expect that its host heals (heal.expect)', () => {
    const before: Record<string, string[]> = {
      'client.report': ['pod.heartbeat', 'pod.prepared', 'pod.committed', 'pod.aborted', 'pod.failed', 'pod.stopped', 'pod.restored'],
      'pod.cmd': ['step.dispatch', 'step.commit', 'step.abort', 'run.end', 'run.restore'],
      'pod.report': ['host.heartbeat', 'host.prepared', 'host.committed', 'host.aborted', 'host.failed', 'host.stopped', 'host.restored'],
      'host.cmd': ['host.dispatch', 'host.commit', 'host.abort', 'run.end', 'host.restore'],
      'host.data': ['tensor.chunk', 'tensor.request'],
      'host.state': ['state.request'],
      'host.expect': ['heal.expect'],
      'host.heal': ['tensor.chunk', 'state.done', 'state.none'],
    };
    const sender = {
      'client.report': ['pod'],
      'pod.cmd': ['client'],
      'pod.report': ['host'],
      'host.cmd': ['pod'],
      'host.expect': ['pod'],
    } as Record<string, string[]>;
    for (const [c, kinds] of Object.entries(before) as [WireChannel, string[]][]) {
      expect(new Set(kindsOn(c)), c).toEqual(new Set(kinds));
      expect(sendersOn(c), c).toEqual(sender[c] ?? ['host']);
    }
    expect(tensorsOn('host.data')).toEqual([
      'grad.slice',
      'grad.exchange',
      'param.shard',
      'grad.partial',
      'grad.reduced',
      'param.prefix',
      'param.full',
    ]);
    expect(tensorsOn('host.heal')).toEqual(['state.params', 'state.opt']);
  });

  it('ping and pong go between hosts only, progress goes to observers', () => {
    expect(sendersOn('host.ping')).toEqual(['host']);
    expect(receiversOn('host.ping')).toEqual(['host']);
    expect(new Set(kindsOn('host.ping'))).toEqual(new Set(['ping', 'pong']));
    expect(channelsOf('observer', 'receives')).toEqual(['progress']);
    expect(channelsOf('client', 'sends')).toEqual(['pod.cmd', 'progress']);
  });

  it('a tensor.request asks only for a tensor that travels on host.data', () => {
    expect(new Set(TensorRequest.shape.tensor.options)).toEqual(new Set(tensorsOn('host.data')));
  });

  it("a channel's subject is the one subjects.ts builds, for every pod and host", () => {
    const built: Record<WireChannel, string> = {
      'client.report': subjects.clientReport('r', 1),
      'pod.cmd': subjects.podCmd('r', 1),
      'pod.report': subjects.podReport('r', 1, 2),
      'host.cmd': subjects.hostCmd('r', 1, 3),
      'host.data': subjects.hostData('r', 1, 3, 0, 2),
      'host.ping': subjects.hostPing('r', 1, 3, 0),
      'host.state': subjects.hostState('r', 1, 3, 0),
      'host.expect': subjects.hostExpect('r', 1, 3, 0),
      'host.heal': subjects.hostHeal('r', 1, 3, 0),
      progress: subjects.progress('r'),
    };
    for (const c of channelNames) {
      expect(subjectMatches(channelPattern(c, 'r'), built[c]), c).toBe(true);
      for (const other of channelNames)
        if (other !== c) expect(subjectMatches(channelPattern(c, 'r'), built[other]), `${c} vs ${other}`).toBe(false);
    }
    expect(wireChannels['host.data'].subject).toBe('lockstep.<run>.host.<p>.<h>.data.<sp>.<sh>');
    expect(channelPattern('host.data', 'r')).toBe('lockstep.r.host.*.*.data.*.*');
  });

  it("a subject names its sender wherever the receiver's tokens do not: the edge reads it back", () => {
    const named = (c: WireChannel, s: string) => subjectSender(c)?.(s);
    expect(named('host.data', subjects.hostData('r', 1, 3, 0, 2))).toBe('host/0/2');
    expect(named('pod.report', subjects.podReport('r', 1, 2))).toBe('host/1/2');
    expect(named('client.report', subjects.clientReport('r', 1))).toBe('pod/1');
    expect(named('host.cmd', subjects.hostCmd('r', 1, 3))).toBe('pod/1');
    expect(named('host.state', subjects.hostState('r', 1, 3, 0))).toBe('host/0/3');
    expect(named('host.heal', subjects.hostHeal('r', 0, 3, 1))).toBe('host/1/3');
    expect(named('pod.cmd', subjects.podCmd('r', 1))).toBe('client');
    expect(named('progress', subjects.progress('r'))).toBe('client');
    expect(named('host.ping', subjects.hostPing('r', 1, 3, 0))).toBe('host/0/3');
    expect(named('host.expect', subjects.hostExpect('r', 1, 3, 0))).toBe('pod/0');
    expect(named('host.data', 'lockstep.r.host.1.3.data.0')).toBeUndefined(); // not of the channel's form
    // every channel names a sender, one of the roles that send on it, and each receiver is one that receives
    for (const c of channelNames) {
      const row: WireChannelRow = wireChannels[c];
      expect(sendersOn(c), c).toEqual([parseSender(row.sender.replace(/<[a-z]+>/g, '0'))?.role]);
      if (row.receiver) expect(receiversOn(c), c).toContain(parseSender(row.receiver.replace(/<[a-z]+>/g, '0'))?.role);
    }
  });
});

describe('phases for fault rules', () => {
  it('each kind has the phase it had before the table; heartbeats, pings, healing and requests have none', () => {
    const before: Record<string, MessagePhase> = {
      'step.dispatch': 'dispatch',
      'host.dispatch': 'dispatch',
      'grad.slice': 'reduceScatter',
      'grad.exchange': 'exchange',
      'param.shard': 'allGather',
      // chain collectives (after the table): the running sums and reduced shards, the prefixes and whole parameters
      'grad.partial': 'reduceScatter',
      'grad.reduced': 'reduceScatter',
      'param.prefix': 'allGather',
      'param.full': 'allGather',
      'host.prepared': 'prepared',
      'pod.prepared': 'prepared',
      'step.commit': 'commit',
      'host.commit': 'commit',
      'host.committed': 'commit',
      'pod.committed': 'commit',
      'step.abort': 'abort',
      'host.abort': 'abort',
      'host.aborted': 'abort',
      'pod.aborted': 'abort',
      'host.failed': 'abort',
      'pod.failed': 'abort',
      'run.restore': 'restore',
      'host.restore': 'restore',
      'host.restored': 'restore',
      'pod.restored': 'restore',
      'run.end': 'end',
      'host.stopped': 'end',
      'pod.stopped': 'end',
    };
    for (const k of wireKinds) expect(phaseOfKind(k), k).toBe(before[k]);
    const none: WireKind[] = [
      'host.heartbeat',
      'pod.heartbeat',
      'ping',
      'pong',
      'step.committed',
      'tensor.request',
      'heal.expect',
      'state.request',
    ];
    for (const k of none) expect(wireTable[k].phase).toBe('none');
  });

  it('every phase has a kind; unknown kinds have no phase', () => {
    for (const p of MessagePhase.options)
      expect(
        rows.some(([, r]) => r.phase === p),
        p,
      ).toBe(true);
    expect(phaseOfKind('no.such.kind')).toBeUndefined();
    expect(phaseOfKind('constructor')).toBeUndefined();
    expect(phaseOfKind('tensor.chunk')).toBeUndefined();
  });
});

describe('NATS permissions derived from the table, per actor', () => {
  const r = 'lockstep.run1';

  it('an actor publishes on the channels it sends on with its own sender tokens, and subscribes to its own subjects', () => {
    expect(actorPermissions('run1', 'client')).toEqual({
      publish: [`${r}.pod.*.cmd`, `${r}.progress`],
      subscribe: [`${r}.client.report.*`],
    });
    expect(actorPermissions('run1', 'pod/1')).toEqual({
      publish: [`${r}.client.report.1`, `${r}.host.1.*.cmd`, `${r}.host.*.*.expect.1`],
      subscribe: [`${r}.pod.1.cmd`, `${r}.pod.1.report.*`],
    });
    expect(actorPermissions('run1', 'host/0/1')).toEqual({
      publish: [`${r}.pod.0.report.1`, `${r}.host.*.*.data.0.1`, `${r}.host.*.1.ping.0`, `${r}.host.*.1.state.0`, `${r}.host.*.1.heal.0`],
      subscribe: [`${r}.host.0.1.>`],
    });
    expect(observerPermissions('run1')).toEqual({ publish: ['_INBOX.>'], subscribe: [`${r}.>`, '_INBOX.>'] });
    expect(() => actorPermissions('run1', 'host/0')).toThrow(/not an actor name/);
  });

  it('a connection that speaks for several hosts (a host process) may what each of them may, and batch frames under its own key only', () => {
    const both = identityPermissions('run1', ['host/0/2', 'host/0/3']);
    expect(both.publish).toEqual(expect.arrayContaining([`${r}.host.*.*.data.0.2`, `${r}.host.*.*.data.0.3`, `${r}.pod.0.report.2`]));
    expect(both.subscribe).toEqual([`${r}.host.0.2.>`, `${r}.host.0.3.>`, `${r}.batch.0.h2.*`]);
    expect(both.publish.some((p) => subjectMatches(p, subjects.hostData('run1', 0, 0, 0, 4)))).toBe(false);
    // batch frames: from this process (h2) to any process of pod 0, never under another process's key or pod
    expect(both.publish.some((p) => subjectMatches(p, subjects.batch('run1', 0, 'h0', 'h2')))).toBe(true);
    expect(both.publish.some((p) => subjectMatches(p, subjects.batch('run1', 0, 'h2', 'h0')))).toBe(false);
    expect(both.publish.some((p) => subjectMatches(p, subjects.batch('run1', 1, 'h0', 'h2')))).toBe(false);
    expect(identityPermissions('run1', ['pod/1']).subscribe).toContain(`${r}.batch.1.pod.*`);
    expect(identityPermissions('run1', ['client']).publish.some((p) => p.includes('.batch.'))).toBe(false);
    expect(processKey(['host/0/1', 'host/1/2'])).toBeUndefined();
  });

  it("a host's tree is its six channels; an actor receiving on all of them subscribes to its own tree", () => {
    expect(channelsIn('host')).toEqual(['host.cmd', 'host.data', 'host.ping', 'host.state', 'host.expect', 'host.heal']);
    expect(channelsOf('host', 'receives')).toEqual(channelsIn('host'));
    expect(channelsOf('host', 'sends')).not.toContain('host.cmd');
    expect(receivePattern('host.data', 'run1', 'host/1/0')).toBe(`${r}.host.1.0.data.*.*`);
    expect(receivePattern('host.data', 'run1', 'pod/1')).toBeUndefined();
    expect(sendPattern('host.cmd', 'run1', 'host/1/0')).toBeUndefined();
  });

  // every actor and every subject of a 2x2 run (and of another run), with every sender token
  const actors = ['client', 'pod/0', 'pod/1', 'host/0/0', 'host/0/1', 'host/1/0', 'host/1/1'];
  const ix = [0, 1];
  const all = ['run1', 'other'].flatMap((run) => [
    subjects.progress(run),
    `lockstep.${run}.runlog`,
    ...ix.map((sp) => subjects.clientReport(run, sp)),
    ...ix.flatMap((p) => [
      subjects.podCmd(run, p),
      ...ix.map((sh) => subjects.podReport(run, p, sh)),
      ...ix.flatMap((h) => [
        subjects.hostCmd(run, p, h),
        ...ix.flatMap((sp) => [
          subjects.hostPing(run, p, h, sp),
          subjects.hostState(run, p, h, sp),
          subjects.hostExpect(run, p, h, sp),
          subjects.hostHeal(run, p, h, sp),
        ]),
        ...ix.flatMap((sp) => ix.map((sh) => subjects.hostData(run, p, h, sp, sh))),
      ]),
    ]),
  ]);
  const allowed = (list: string[], s: string) => list.some((p) => subjectMatches(p, s));
  const channelOf = (s: string) => channelNames.filter((c) => subjectMatches(channelPattern(c, 'run1'), s));

  it('on every subject, only the actor it names as its sender may publish', () => {
    for (const actor of actors) {
      const perms = actorPermissions('run1', actor);
      for (const s of all) {
        const [c] = channelOf(s);
        const expected = c !== undefined && subjectSender(c)(s) === actor;
        expect(allowed(perms.publish, s), `${actor} publish ${s}`).toBe(expected);
      }
    }
  });

  it('an actor may subscribe to the subjects addressed to it (from any sender), and to no other', () => {
    for (const actor of actors) {
      const perms = actorPermissions('run1', actor);
      for (const s of all) {
        const [c] = channelOf(s);
        const mine =
          c !== undefined && receivePattern(c, 'run1', actor) !== undefined && subjectMatches(receivePattern(c, 'run1', actor)!, s);
        expect(allowed(perms.subscribe, s), `${actor} subscribe ${s}`).toBe(mine);
      }
    }
    // and so: a host hears only its own subjects, a pod only its own
    expect(allowed(actorPermissions('run1', 'host/0/0').subscribe, subjects.hostData('run1', 0, 1, 0, 0))).toBe(false);
    expect(allowed(actorPermissions('run1', 'pod/0').subscribe, subjects.podReport('run1', 1, 0))).toBe(false);
  });

  it('the forgeries of the security review are refused: host/0/0 as host/0/1, on pod 1, or a command; pod/0 as pod/1', () => {
    const host00 = actorPermissions('run1', 'host/0/0').publish;
    expect(allowed(host00, subjects.hostData('run1', 0, 0, 0, 1))).toBe(false); // a grad.slice as host/0/1
    expect(allowed(host00, subjects.hostData('run1', 1, 0, 0, 1))).toBe(false);
    expect(allowed(host00, subjects.podReport('run1', 0, 1))).toBe(false); // a host.prepared as host/0/1
    for (const sh of ix) expect(allowed(host00, subjects.podReport('run1', 1, sh))).toBe(false); // anything on pod 1's reports
    expect(allowed(host00, subjects.hostCmd('run1', 0, 1))).toBe(false);
    expect(allowed(host00, subjects.hostState('run1', 1, 0, 1))).toBe(false);
    expect(allowed(host00, subjects.hostHeal('run1', 1, 0, 1))).toBe(false);
    expect(allowed(host00, subjects.hostPing('run1', 1, 0, 1))).toBe(false);
    for (const sp of ix) expect(allowed(host00, subjects.hostExpect('run1', 1, 0, sp))).toBe(false); // heal.expect as a pod
    // what it may: its own data to any peer, its own reports, state and heal as itself
    expect(allowed(host00, subjects.hostData('run1', 0, 1, 0, 0))).toBe(true);
    expect(allowed(host00, subjects.hostData('run1', 1, 0, 0, 0))).toBe(true);
    expect(allowed(host00, subjects.podReport('run1', 0, 0))).toBe(true);
    expect(allowed(host00, subjects.hostState('run1', 1, 0, 0))).toBe(true);
    const pod0 = actorPermissions('run1', 'pod/0').publish;
    expect(allowed(pod0, subjects.clientReport('run1', 1))).toBe(false);
    expect(allowed(pod0, subjects.hostCmd('run1', 1, 0))).toBe(false);
    expect(allowed(pod0, subjects.hostExpect('run1', 1, 0, 1))).toBe(false); // heal.expect as pod/1
    expect(allowed(pod0, subjects.hostState('run1', 1, 0, 0))).toBe(false); // a state.request as its host
    expect(allowed(pod0, subjects.clientReport('run1', 0))).toBe(true);
    expect(allowed(pod0, subjects.hostExpect('run1', 1, 0, 0))).toBe(true);
  });
});

describe('the README subject table', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

  it('is the one rendered from the table (npm run docs:wire rewrites it)', () => {
    const start = readme.indexOf(WIRE_DOC_START);
    const end = readme.indexOf(WIRE_DOC_END);
    expect(start, 'README has the wire-table markers').toBeGreaterThan(0);
    expect(readme.slice(start + WIRE_DOC_START.length, end).trim()).toBe(renderWireDoc());
    expect(spliceWireDoc(readme)).toBe(readme);
  });

  it('names every kind and every subject once per table', () => {
    const doc = renderWireDoc();
    for (const k of wireKinds) expect(doc, k).toContain(`| \`${k}\``);
    for (const c of channelNames) expect(doc, c).toContain(`| \`${wireChannels[c].subject}\` |`);
    const lines = doc.split('\n').filter((l) => l.startsWith('| `'));
    expect(lines).toHaveLength(channelNames.length + wireKinds.length);
  });

  it('splicing needs the markers and leaves the rest of the document alone', () => {
    expect(() => spliceWireDoc('no markers here')).toThrow(/wire-table:start/);
    const doc = `before\n${WIRE_DOC_START}\nold table\n${WIRE_DOC_END}\nafter\n`;
    const out = spliceWireDoc(doc);
    expect(out).toBe(`before\n${WIRE_DOC_START}\n${renderWireDoc()}\n${WIRE_DOC_END}\nafter\n`);
    expect(spliceWireDoc(out)).toBe(out);
  });
});

// the table's kinds are the ControlMessage kinds and the tensor kinds, at the type level too
const sameKinds: [ControlKind | TensorKind] extends [WireKind] ? ([WireKind] extends [ControlKind | TensorKind] ? true : false) : false =
  true;
void sameKinds;
