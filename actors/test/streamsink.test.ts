import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunEvent } from '@lockstep/topology';
import { eventSinkFromEnv } from '../src/index.ts';

/** A role process in a container appends its run events to LOCKSTEP_STREAM_FILE, which a recorder elsewhere reads. */
describe('the stream file sink (LOCKSTEP_STREAM_FILE)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-stream-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('appends each event and line as one JSON line, after what the file held (a restarted process keeps its earlier lines)', async () => {
    const file = join(dir, 'host-0-1.jsonl');
    const first = eventSinkFromEnv({ LOCKSTEP_STREAM_FILE: file });
    first?.emit({ kind: 'start', actor: 'host-0-1', at: 1, pid: 10, restart: 0 });
    await first?.close();
    const second = eventSinkFromEnv({ LOCKSTEP_STREAM_FILE: file });
    second?.emit({ kind: 'start', actor: 'host-0-1', at: 2, pid: 11, restart: 1 });
    second?.line({ type: 'summary', stepsCommitted: 3 });
    await second?.close();
    const lines = readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown);
    expect(lines.slice(0, 2).map((l) => RunEvent.parse(l))).toMatchObject([
      { pid: 10, restart: 0 },
      { pid: 11, restart: 1 },
    ]);
    expect(lines[2]).toEqual({ type: 'summary', stepsCommitted: 3 });
  });

  it('none: no sink; a path that is not absolute .jsonl is refused, named', () => {
    expect(eventSinkFromEnv({})).toBeUndefined();
    expect(eventSinkFromEnv({ LOCKSTEP_STREAM_FILE: '' })).toBeUndefined();
    for (const bad of ['relative.jsonl', '/tmp/x.txt'])
      expect(() => eventSinkFromEnv({ LOCKSTEP_STREAM_FILE: bad })).toThrow(
        /^LOCKSTEP_STREAM_FILE: must be an absolute path ending in \.jsonl$/,
      );
  });
});
