import { checkpointDirName, shardFileName } from '@lockstep/topology';
import { checkpointSteps, type Disk } from '../checkpoint/store.ts';

/**
 * A disk in memory for `lockstep sim`: the checkpoint store's own code runs
 * over it (manifests, replicas, torn and corrupt detection). Writes are
 * atomic, as on the real disk; `tear` cuts files afterwards, as a torn
 * write found on restart would.
 */
export class MemDisk implements Disk {
  private readonly files = new Map<string, Buffer>();
  writes = 0;

  writeFileAtomic(path: string, bytes: Uint8Array): void {
    this.writes++;
    this.files.set(path, Buffer.from(bytes));
  }

  readFile(path: string): Buffer {
    const b = this.files.get(path);
    if (!b) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return b;
  }

  readdir(dir: string): string[] {
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    const names = new Set<string>();
    for (const p of this.files.keys()) if (p.startsWith(prefix)) names.add(p.slice(prefix.length).split('/')[0]);
    if (names.size === 0) throw Object.assign(new Error(`ENOENT: ${dir}`), { code: 'ENOENT' });
    return [...names].sort();
  }

  rm(path: string): void {
    const prefix = `${path}/`;
    for (const p of [...this.files.keys()]) if (p === path || p.startsWith(prefix)) this.files.delete(p);
  }

  /** Cut every replica of shard 0 of the newest checkpoint under `dir` to half its length; the step torn, if any. */
  tear(dir: string, pods: number): number | undefined {
    const step = checkpointSteps(dir, this)[0];
    if (step === undefined) return undefined;
    for (let p = 0; p < pods; p++) {
      const path = `${dir}/${checkpointDirName(step)}/${shardFileName(p, 0)}`;
      const b = this.files.get(path);
      if (b) this.files.set(path, b.subarray(0, b.length >> 1));
    }
    return step;
  }
}
