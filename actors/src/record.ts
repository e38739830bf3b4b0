import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { InspectionEvent } from 'xstate';

/**
 * Recording a real run's machines (`lockstep train --record`), for `lockstep
 * replay`: every event an actor's machine takes, in the order it takes them
 * (wire messages, ticks, its run log's and checkpoint store's answers, its
 * computations' results, its own delays firing), and what it tells its edge
 * to send. One JSON line each, in `<dir>/<actor>.jsonl` (`host/0/1` ->
 * `host-0-1.jsonl`); tensors as base64 of their float32 bytes.
 *
 *   {"input": {...}}                       first line: the machine's input
 *   {"in": <event>}                        an event the machine took
 *   {"out": {"kind", "step", "attempt", "hash"?}}   a message it sent (tensors: the tensor kind; the hash a report carries)
 */
export type RecordLine = { input: unknown } | { in: { type: string; [k: string]: unknown } } | { out: RecordedOut };

/** A message a machine sent, as recorded and compared: its kind, step and attempt, and the hash it reports, if any. */
export type RecordedOut = { kind: string; step: number; attempt: number; hash?: string };

type AnyWireCommand = {
  type: string;
  message?: { kind: string; step: number; attempt: number; paramsHash?: unknown; shardHash?: unknown };
  head?: { tensor: string; step: number; attempt: number };
  commands?: AnyWireCommand[];
};

/** What of a wire command is recorded and compared: one line per message (a `wire.sendMany` gives one for each of its commands). */
export function outsOf(cmd: AnyWireCommand): RecordedOut[] {
  if (cmd.type === 'wire.sendMany') return (cmd.commands ?? []).flatMap(outsOf);
  const out = outOf(cmd);
  return out ? [out] : [];
}

/** What of one wire command (not a `wire.sendMany`) is recorded and compared. */
export function outOf(cmd: AnyWireCommand): RecordedOut | undefined {
  if (cmd.type === 'wire.send' && cmd.message) {
    const m = cmd.message;
    const hash = typeof m.paramsHash === 'string' ? m.paramsHash : typeof m.shardHash === 'string' ? m.shardHash : undefined;
    return { kind: m.kind, step: m.step, attempt: m.attempt, ...(hash ? { hash } : {}) };
  }
  if (cmd.type === 'wire.sendTensor' && cmd.head) return { kind: cmd.head.tensor, step: cmd.head.step, attempt: cmd.head.attempt };
  return undefined;
}

/** JSON with float32 arrays as `{"$f32": base64}`. */
export function encodeRecord(line: RecordLine): string {
  return JSON.stringify(line, (_k, v) => {
    if (v instanceof Float32Array) return { $f32: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
    if (v instanceof Map) return { $map: [...v.entries()] };
    if (v instanceof Set) return { $set: [...v.values()] };
    return v;
  });
}

export function decodeRecord(text: string): RecordLine {
  return JSON.parse(text, (_k, v) => {
    if (v && typeof v === 'object' && typeof v.$f32 === 'string' && Object.keys(v).length === 1) {
      const b = Buffer.from(v.$f32, 'base64');
      const out = new Float32Array(b.length / 4);
      new Uint8Array(out.buffer).set(b);
      return out;
    }
    if (v && typeof v === 'object' && Array.isArray(v.$map) && Object.keys(v).length === 1) return new Map(v.$map);
    if (v && typeof v === 'object' && Array.isArray(v.$set) && Object.keys(v).length === 1) return new Set(v.$set);
    return v;
  }) as RecordLine;
}

export const recordFile = (dir: string, actor: string) => join(dir, `${actor.replaceAll('/', '-')}.jsonl`);

/**
 * An `inspect` observer for `createActor(machine, { inspect })` that records
 * the root actor's events and its sends to its `wire` child. Writes are
 * synchronous, so a killed process leaves every line it took.
 */
export function recorder(dir: string, actor: string, input: unknown): { inspect: (e: InspectionEvent) => void; close: () => void } {
  mkdirSync(dir, { recursive: true });
  const fd = openSync(recordFile(dir, actor), 'a');
  const write = (line: RecordLine) => writeSync(fd, `${encodeRecord(line)}\n`);
  write({ input });
  return {
    inspect: (e) => {
      if (e.type !== '@xstate.event') return;
      const target = e.actorRef as unknown as { _parent?: unknown; id: string };
      if (target._parent === undefined) {
        if (e.event.type === 'xstate.init' || e.event.type.startsWith('xstate.stop')) return;
        write({ in: e.event as RecordLine extends { in: infer I } ? I : never });
        return;
      }
      if (target.id === 'wire' && (target._parent as { _parent?: unknown })._parent === undefined) {
        for (const out of outsOf(e.event as AnyWireCommand)) write({ out });
      }
    },
    close: () => closeSync(fd),
  };
}

/** One `inspect` observer from several (absent ones skipped). */
export function inspectors(...all: (((e: InspectionEvent) => void) | undefined)[]): ((e: InspectionEvent) => void) | undefined {
  const some = all.filter((f) => f !== undefined);
  if (some.length === 0) return undefined;
  return (e) => {
    for (const f of some) f(e);
  };
}
