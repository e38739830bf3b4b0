import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord } from '@lockstep/actors';
import { cli, tempDir } from './helpers.ts';

describe('lockstep replay: a real run decided again offline', () => {
  it('train --record, then replay: every machine decides the same, message for message; a changed input is noticed', () => {
    const dir = tempDir();
    const runDir = join(dir, 'run');
    const train = cli(['train', '--topology', 'tiny', '--steps', '6', '--record', '--run-dir', runDir, '--json']);
    expect(train.code).toBe(0);
    const r = cli(['replay', runDir, '--json']);
    expect(r.code).toBe(0);
    const actors = r.json!.actors as { actor: string; events: number; recorded: number; replayed: number; divergence?: unknown }[];
    expect(actors.map((a) => a.actor).sort()).toEqual(['client', 'host/0/0', 'host/0/1', 'host/1/0', 'host/1/1', 'pod/0', 'pod/1']);
    for (const a of actors) {
      expect(a.divergence).toBeUndefined();
      expect(a.recorded).toBe(a.replayed);
      expect(a.events).toBeGreaterThan(0);
    }
    // the client told each pod to commit each of the 6 steps (and the replayed client did too)
    const client = readFileSync(join(runDir, 'record', 'client.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(decodeRecord);
    const commits = client.flatMap((l) => ('out' in l && l.out.kind === 'step.commit' ? [l.out.step] : []));
    expect(new Set(commits)).toEqual(new Set([0, 1, 2, 3, 4, 5]));

    // one pod's report of step 2 changed in the client's record: the replayed client sees the pods disagree and aborts
    const file = join(runDir, 'record', 'client.jsonl');
    let changed = false;
    const tampered = client.map((l) => {
      if (!changed && 'in' in l && l.in.type === 'pod.prepared') {
        const msg = l.in.msg as { step: number; paramsHash: string };
        if (msg.step === 2) {
          changed = true;
          return { in: { ...l.in, msg: { ...msg, paramsHash: '0'.repeat(64) } } };
        }
      }
      return l;
    });
    expect(changed).toBe(true);
    writeFileSync(file, `${tampered.map(encodeRecord).join('\n')}\n`);
    const d = cli(['replay', runDir, '--json']);
    expect(d.code).toBe(1);
    const c = (d.json!.actors as { actor: string; divergence?: { recorded?: { kind: string; step: number } } }[]).find(
      (a) => a.actor === 'client',
    )!;
    expect(c.divergence?.recorded).toMatchObject({ kind: 'step.commit', step: 2 });
  }, 120_000);

  it('a record that does not cover the run, or holds a line that is not a record line, exits 2 naming the file', () => {
    const dir = tempDir();
    const runDir = join(dir, 'run');
    expect(cli(['train', '--topology', 'tiny', '--steps', '3', '--record', '--run-dir', runDir, '--json']).code).toBe(0);
    const file = join(runDir, 'record', 'host-0-1.jsonl');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, `${text}null\n`);
    const bad = cli(['replay', runDir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/host-0-1\.jsonl:\d+: not an object/);
    rmSync(file);
    const missing = cli(['replay', runDir]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no record of host\/0\/1/);
  }, 120_000);

  it('replay of a run without a record exits 2 and says how to make one', () => {
    const r = cli(['replay', tempDir()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/train --record/);
  });
});
