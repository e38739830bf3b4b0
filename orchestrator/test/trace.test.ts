import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '@lockstep/topology';
import { parseTrace, RunRecorder, TraceWriter } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const slice = (actor: string, name: string, at: number, dur: number): RunEvent => ({
  kind: 'slice',
  actor,
  name,
  at,
  dur,
  step: 0,
  attempt: 0,
});

describe('trace.json (Chrome trace-event format)', () => {
  it('a closed trace is strict JSON; one cut off mid-run still parses as a trace viewer reads it', () => {
    const file = join(tempDir(), 'trace.json');
    const w = new TraceWriter(file);
    w.add(slice('host/0/0', 'forward', 1_000, 50), 'host-0-0');
    w.add(
      {
        kind: 'flow',
        end: 'send',
        actor: 'host/0/0',
        at: 1_060,
        tensor: 'grad.exchange',
        from: 'host/0/0',
        to: 'host/1/0',
        step: 0,
        attempt: 0,
        bytes: 8,
      },
      'host-0-0',
    );
    w.flush(); // what a killed launcher leaves: the lines written so far, no closing bracket
    const open = readFileSync(file, 'utf8');
    expect(() => JSON.parse(open)).toThrow();
    const cut = parseTrace(open);
    expect(cut.filter((e) => e.ph === 'X')).toEqual([
      expect.objectContaining({ name: 'forward', ts: 1_000, dur: 50, args: { step: 0, attempt: 0 } }),
    ]);
    w.add(
      {
        kind: 'flow',
        end: 'receive',
        actor: 'host/1/0',
        at: 1_090,
        tensor: 'grad.exchange',
        from: 'host/0/0',
        to: 'host/1/0',
        step: 0,
        attempt: 0,
        bytes: 8,
      },
      'host-1-0',
    );
    w.close();
    const all = JSON.parse(readFileSync(file, 'utf8')) as ReturnType<typeof parseTrace>;
    const [s, f] = all.filter((e) => e.ph === 's' || e.ph === 'f');
    expect(s.id).toBe(f.id); // the arrow's two ends meet
    expect(s.pid).not.toBe(f.pid);
    expect(all.filter((e) => e.name === 'process_name').map((e) => e.args!.name)).toEqual(['host-0-0', 'host-1-0']);
    expect(() => parseTrace('{"traceEvents": []}')).toThrow(SyntaxError);
  });
});

describe('steps.jsonl', () => {
  it("a committed step waits for its hosts' phase slices, then carries each host's time and its retried attempts", () => {
    const dir = tempDir();
    const rec = new RunRecorder(dir, { hosts: ['host/0/0'], log: quietLog });
    const seen: string[] = [];
    rec.subscribe((e) => seen.push(e.kind));
    const hash = 'a'.repeat(64);
    rec.record({
      kind: 'retry',
      actor: 'client',
      at: 1,
      failure: {
        kind: 'deadline',
        step: 0,
        attempt: 0,
        pod: 0,
        host: 0,
        cause: { kind: 'deadline', actor: 'host/0/0', phase: 'exchange', ms: 5, waitingFor: 'grad.exchange', peers: [] },
        message: 'x',
      },
    } as RunEvent);
    const phases = ['forward', 'backward', 'reduceScatter', 'exchange', 'update'];
    for (const [i, p] of phases.entries()) rec.record({ ...slice('host/0/0', p, 10 + i, 1000), attempt: 1 } as RunEvent, 'host-0-0');
    rec.step({
      type: 'step.committed',
      step: 0,
      attempt: 1,
      loss: 1,
      paramsHash: hash,
      podHashes: [hash],
      podsAgree: true,
      phaseMs: {},
      ms: 3,
      shardHashes: [hash],
      waitedMs: 0,
    });
    const stepsFile = join(dir, 'steps.jsonl');
    expect(readFileSync(stepsFile, 'utf8')).toBe(''); // allGather not in yet
    rec.record({ ...slice('host/0/0', 'allGather', 20, 2000), attempt: 1 } as RunEvent, 'host-0-0');
    const [line] = readFileSync(stepsFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(line.hosts['host/0/0']).toEqual({ forward: 1, backward: 1, reduceScatter: 1, exchange: 1, update: 1, allGather: 2 });
    expect(line.retried).toHaveLength(1);
    rec.close({ done: true });
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'))).toEqual({ done: true });
    expect(seen).toContain('step');
    rec.take('{"kind":"slice"}', 'host-0-0'); // after close: ignored, no throw
  });
});
