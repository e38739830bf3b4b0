import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  CheckpointManifest,
  checkpointDirName,
  combineShardHashes,
  decodeShardFile,
  describeIssues,
  encodeShardFile,
  initOptimizerState,
  initParams,
  parameterCount,
  shardFileName,
  shardHash,
  shardRange,
  type Topology,
} from '@lockstep/topology';
import type { CommittedState } from '../host/heal.ts';

/**
 * Where checkpoints live: the file system in a real run (`realDisk`), a
 * simulated disk that can tear a write in `lockstep sim`. Reads throw an error
 * with a `code` (ENOENT, ...) as Node's do.
 */
export interface Disk {
  /** Write all of `bytes` or nothing (a crash leaves the old file or the new one). */
  writeFileAtomic(path: string, bytes: Uint8Array): void;
  readFile(path: string): Buffer;
  readdir(dir: string): string[];
  /** Remove a file or a directory with everything in it; nothing if it is not there. */
  rm(path: string): void;
}

/** The real file system: atomic writes are a temporary file, fsync, rename, fsync of the directory. */
export const realDisk: Disk = {
  writeFileAtomic,
  readFile: (path) => readFileSync(path),
  readdir: (dir) => readdirSync(dir),
  rm: (path) => rmSync(path, { recursive: true, force: true }),
};

/**
 * Checkpoints on disk (the format is in topology/checkpoint.ts). Every write
 * is atomic: a temporary file, fsync, rename, fsync of the directory, so a
 * crash leaves the old file or the new one, never half of one.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** A host's part of the checkpoint of `step`: its shard and optimizer state. */
export function writeShardCheckpoint(
  dir: string,
  o: { runId: string; step: number; pod: number; host: number; shard: Float32Array; opt: Float32Array[] },
  disk: Disk = realDisk,
): string {
  const path = join(dir, checkpointDirName(o.step), shardFileName(o.pod, o.host));
  disk.writeFileAtomic(
    path,
    encodeShardFile({ runId: o.runId, step: o.step, pod: o.pod, host: o.host, shardHash: shardHash(o.shard) }, o.shard, o.opt),
  );
  return path;
}

/** The client's manifest for the checkpoint of `m.step`; then checkpoints older than the newest `keep` are deleted. */
export function writeManifest(dir: string, m: CheckpointManifest, keep: number, disk: Disk = realDisk): void {
  disk.writeFileAtomic(join(dir, checkpointDirName(m.step), 'manifest.json'), new TextEncoder().encode(`${JSON.stringify(m, null, 2)}\n`));
  const steps = checkpointSteps(dir, disk).filter((s) => s <= m.step);
  for (const s of steps.slice(keep)) disk.rm(join(dir, checkpointDirName(s)));
}

/** Steps with a checkpoint directory, newest first. */
export function checkpointSteps(dir: string, disk: Disk = realDisk): number[] {
  let names: string[];
  try {
    names = disk.readdir(dir);
  } catch {
    return [];
  }
  return names
    .flatMap((n) => {
      const m = /^step-(\d+)$/.exec(n);
      return m ? [Number(m[1])] : [];
    })
    .sort((a, b) => b - a);
}

export interface CheckpointChoice {
  manifest: CheckpointManifest;
  /** For each shard, the file of a replica that checked out. */
  files: string[];
  /** Newer checkpoints passed over, and why. */
  skipped: { step: number; reason: string }[];
}

function readManifest(dir: string, step: number, t: Topology, runId: string, disk: Disk): CheckpointManifest | string {
  let value: unknown;
  try {
    value = JSON.parse(disk.readFile(join(dir, checkpointDirName(step), 'manifest.json')).toString('utf8'));
  } catch (err) {
    return `manifest unreadable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  const r = CheckpointManifest.safeParse(value);
  if (!r.success) return `manifest: ${describeIssues(r.error).join('; ')}`;
  const m = r.data;
  if (m.runId !== runId || m.step !== step) return `manifest is for run ${m.runId} step ${m.step}`;
  if (m.shardHashes.length !== t.hostsPerPod) return `manifest has ${m.shardHashes.length} shards, the topology ${t.hostsPerPod}`;
  if (combineShardHashes(m.shardHashes) !== m.paramsHash) return 'manifest paramsHash does not match its shard hashes';
  return m;
}

/** A replica of shard `host` of checkpoint `step` that checks out, or why none does. */
function validReplica(dir: string, m: CheckpointManifest, host: number, length: number, disk: Disk): { file: string } | { reason: string } {
  const reasons: string[] = [];
  for (let pod = 0; pod < m.pods; pod++) {
    const file = join(dir, checkpointDirName(m.step), shardFileName(pod, host));
    let bytes: Buffer;
    try {
      bytes = disk.readFile(file);
    } catch (err) {
      reasons.push(`pod ${pod}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
      continue;
    }
    const d = decodeShardFile(bytes);
    if (!d.ok) reasons.push(`pod ${pod}: ${d.reason}`);
    else if (d.header.step !== m.step || d.header.host !== host || d.shard.length !== length)
      reasons.push(`pod ${pod}: file is for step ${d.header.step} host ${d.header.host}`);
    else if (shardHash(d.shard) !== m.shardHashes[host]) reasons.push(`pod ${pod}: shard hash differs from the manifest`);
    else return { file };
  }
  return { reason: `shard ${host}: no valid replica (${reasons.join('; ')})` };
}

/** The newest checkpoint at or before `atMost` whose manifest and every shard check out. */
export function findCheckpoint(
  dir: string,
  t: Topology,
  runId: string,
  atMost: number,
  disk: Disk = realDisk,
): CheckpointChoice | { skipped: { step: number; reason: string }[] } {
  const skipped: { step: number; reason: string }[] = [];
  const size = parameterCount(t.model);
  for (const step of checkpointSteps(dir, disk).filter((s) => s <= atMost)) {
    const m = readManifest(dir, step, t, runId, disk);
    if (typeof m === 'string') {
      skipped.push({ step, reason: m });
      continue;
    }
    const files: string[] = [];
    let bad: string | undefined;
    for (let h = 0; h < t.hostsPerPod && !bad; h++) {
      const r = shardRange(size, t.hostsPerPod, h);
      const v = validReplica(dir, m, h, r.end - r.start, disk);
      if ('reason' in v) bad = v.reason;
      else files.push(v.file);
    }
    if (bad) skipped.push({ step, reason: bad });
    else return { manifest: m, files, skipped };
  }
  return { skipped };
}

/** A host's committed state from the checkpoint of `step` (-1: the initial state): every shard's parameters, its own optimizer state. */
export function loadCheckpoint(dir: string, t: Topology, runId: string, host: number, step: number, disk: Disk = realDisk): CommittedState {
  const size = parameterCount(t.model);
  const own = shardRange(size, t.hostsPerPod, host);
  if (step < 0)
    return {
      step: 0,
      params: initParams(t.model, t.training.seed),
      optState: initOptimizerState(t.training.optimizer, own.end - own.start),
      lastCommitted: undefined,
    };
  const choice = findCheckpoint(dir, t, runId, step, disk);
  if (!('manifest' in choice) || choice.manifest.step !== step)
    throw new Error(`checkpoint of step ${step} is not usable: ${choice.skipped.find((s) => s.step === step)?.reason ?? 'not found'}`);
  const params = new Float32Array(size);
  let optState: Float32Array[] = [];
  choice.files.forEach((file, k) => {
    const d = decodeShardFile(disk.readFile(file));
    if (!d.ok) throw new Error(`${file}: ${d.reason}`);
    params.set(d.shard, shardRange(size, t.hostsPerPod, k).start);
    if (k === host) optState = d.opt;
  });
  const m = choice.manifest;
  return { step: step + 1, params, optState, lastCommitted: { step, attempt: m.attempt, shardHash: m.shardHashes[host] } };
}
