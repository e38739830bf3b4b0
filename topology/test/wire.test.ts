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
  observerPermissions,
  phaseOfKind,
  receiversOn,
  renderWireDoc,
  rolePermissions,
  sendersOn,
  spliceWireDoc,
  subjectMatches,
  subjects,
  tensorsOn,
  wireChannels,
  wireKinds,
  wireTable,
  type ControlKind,
  type WireChannel,
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

  it('the edge channels accept what they accepted before the table, and a pod says on host.state that its host heals (heal.expect)', () => {
    const before: Record<string, string[]> = {
      'client.report': ['pod.heartbeat', 'pod.prepared', 'pod.committed', 'pod.aborted', 'pod.failed', 'pod.stopped', 'pod.restored'],
      'pod.cmd': ['step.dispatch', 'step.commit', 'step.abort', 'run.end', 'run.restore'],
      'pod.report': ['host.heartbeat', 'host.prepared', 'host.committed', 'host.aborted', 'host.failed', 'host.stopped', 'host.restored'],
      'host.cmd': ['host.dispatch', 'host.commit', 'host.abort', 'run.end', 'host.restore'],
      'host.data': ['tensor.chunk', 'tensor.request'],
      'host.state': ['state.request', 'heal.expect'],
      'host.heal': ['tensor.chunk', 'state.done', 'state.none'],
    };
    const sender = {
      'client.report': ['pod'],
      'pod.cmd': ['client'],
      'pod.report': ['host'],
      'host.cmd': ['pod'],
      'host.state': ['pod', 'host'],
    } as Record<string, string[]>;
    for (const [c, kinds] of Object.entries(before) as [WireChannel, string[]][]) {
      expect(new Set(kindsOn(c)), c).toEqual(new Set(kinds));
      expect(sendersOn(c), c).toEqual(sender[c] ?? ['host']);
    }
    expect(tensorsOn('host.data')).toEqual(['grad.slice', 'grad.exchange', 'param.shard']);
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
      'client.report': subjects.clientReport('r'),
      'pod.cmd': subjects.podCmd('r', 1),
      'pod.report': subjects.podReport('r', 1),
      'host.cmd': subjects.hostCmd('r', 1, 3),
      'host.data': subjects.hostData('r', 1, 3),
      'host.ping': subjects.hostPing('r', 1, 3),
      'host.state': subjects.hostState('r', 1, 3),
      'host.heal': subjects.hostHeal('r', 1, 3),
      progress: subjects.progress('r'),
    };
    for (const c of channelNames) {
      expect(subjectMatches(channelPattern(c, 'r'), built[c]), c).toBe(true);
      for (const other of channelNames)
        if (other !== c) expect(subjectMatches(channelPattern(c, 'r'), built[other]), `${c} vs ${other}`).toBe(false);
    }
    expect(wireChannels['host.data'].subject).toBe('lockstep.<run>.host.<p>.<h>.data');
    expect(channelPattern('host.data', 'r')).toBe('lockstep.r.host.*.*.data');
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

describe('NATS permissions derived from the table', () => {
  const r = 'lockstep.run1';
  const perms = rolePermissions('run1');

  it('a role publishes on the channels it sends on and subscribes to those it receives on (a host to its whole tree)', () => {
    expect(perms.client).toEqual({
      publish: [`${r}.pod.*.cmd`, `${r}.progress`, '_INBOX.>', '$JS.API.>'],
      subscribe: [`${r}.client.report`, '_INBOX.>'],
    });
    expect(perms.pod).toEqual({
      publish: [`${r}.client.report`, `${r}.host.*.*.cmd`, `${r}.host.*.*.state`, '_INBOX.>'],
      subscribe: [`${r}.pod.*.cmd`, `${r}.pod.*.report`, '_INBOX.>'],
    });
    expect(perms.host).toEqual({
      publish: [`${r}.pod.*.report`, `${r}.host.*.*.data`, `${r}.host.*.*.ping`, `${r}.host.*.*.state`, `${r}.host.*.*.heal`, '_INBOX.>'],
      subscribe: [`${r}.host.*.*.>`, '_INBOX.>'],
    });
    expect(observerPermissions('run1')).toEqual({ publish: ['_INBOX.>'], subscribe: [`${r}.>`, '_INBOX.>'] });
  });

  it("a host's tree is its five channels; only a role using all of them is given the tree", () => {
    expect(channelsIn('host')).toEqual(['host.cmd', 'host.data', 'host.ping', 'host.state', 'host.heal']);
    expect(channelsOf('host', 'receives')).toEqual(channelsIn('host'));
    expect(channelsOf('host', 'sends')).not.toContain('host.cmd');
    expect(perms.host.publish).not.toContain(`${r}.host.*.*.>`);
    expect(perms.pod.publish).not.toContain(`${r}.host.*.*.>`);
  });

  it('no role but a pod may publish a host command, and no role but the client a pod command', () => {
    const allowed = (list: string[], s: string) => list.some((p) => subjectMatches(p, s));
    const who = (s: string) => (['client', 'pod', 'host'] as const).filter((role) => allowed(perms[role].publish, s));
    expect(who(subjects.hostCmd('run1', 0, 0))).toEqual(['pod']);
    expect(who(subjects.podCmd('run1', 1))).toEqual(['client']);
    expect(who(subjects.clientReport('run1'))).toEqual(['pod']);
    expect(who(subjects.progress('run1'))).toEqual(['client']);
    // a pod says on a host's state subject that its own host of that index heals; a host asks there for the state
    expect(who(subjects.hostState('run1', 0, 0))).toEqual(['pod', 'host']);
  });

  it("allows every subject of a 2x2 run exactly as the hand-kept lists did (less the pings the machines no longer send; and a pod its peers' hosts' state subjects: heal.expect)", () => {
    const before = {
      client: {
        publish: [`${r}.pod.*.cmd`, `${r}.progress`, '_INBOX.>', '$JS.API.>'],
        subscribe: [`${r}.client.report`, '_INBOX.>'],
      },
      pod: {
        publish: [`${r}.client.report`, `${r}.host.*.*.cmd`, `${r}.host.*.*.state`, '_INBOX.>'],
        subscribe: [`${r}.pod.*.cmd`, `${r}.pod.*.report`, '_INBOX.>'],
      },
      host: {
        publish: [`${r}.pod.*.report`, `${r}.host.*.*.data`, `${r}.host.*.*.ping`, `${r}.host.*.*.state`, `${r}.host.*.*.heal`, '_INBOX.>'],
        subscribe: [`${r}.host.*.*.>`, '_INBOX.>'],
      },
    };
    const all = ['run1', 'other'].flatMap((run) => [
      subjects.clientReport(run),
      subjects.progress(run),
      `lockstep.${run}.runlog`,
      ...[0, 1].flatMap((p) => [
        subjects.podCmd(run, p),
        subjects.podReport(run, p),
        ...[0, 1].flatMap((h) => [
          subjects.hostCmd(run, p, h),
          subjects.hostData(run, p, h),
          subjects.hostPing(run, p, h),
          subjects.hostState(run, p, h),
          subjects.hostHeal(run, p, h),
        ]),
      ]),
    ]);
    all.push('_INBOX.abc.1', '$JS.API.STREAM.INFO.X');
    const allowed = (list: string[], s: string) => list.some((p) => subjectMatches(p, s));
    for (const role of ['client', 'pod', 'host'] as const) {
      for (const way of ['publish', 'subscribe'] as const) {
        for (const s of all) expect(allowed(perms[role][way], s), `${role} ${way} ${s}`).toBe(allowed(before[role][way], s));
      }
    }
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
