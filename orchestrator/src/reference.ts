import { ReferenceTrainer, type Topology } from '@lockstep/topology';

/** What `lockstep reference --json` prints: the same fields as `train`, from one process. */
export interface ReferenceResult {
  topology: string;
  steps: number;
  paramsHash: string;
  pods: { id: string; paramsHash: string }[];
  loss: { first: number | null; last: number | null };
  stepsPerSecond: number;
  hashes: string[];
}

export function runReference(t: Topology, steps: number, onStep?: (step: number, loss: number) => void): ReferenceResult {
  const r = new ReferenceTrainer(t);
  const hashes: string[] = [];
  let first: number | null = null;
  let last: number | null = null;
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const out = r.runStep();
    first ??= out.loss;
    last = out.loss;
    hashes.push(out.paramsHash);
    onStep?.(s, out.loss);
  }
  const ms = performance.now() - t0;
  const paramsHash = r.paramsHash();
  return {
    topology: t.name,
    steps,
    paramsHash,
    pods: [{ id: 'reference', paramsHash }],
    loss: { first, last },
    stepsPerSecond: steps / (ms / 1000),
    hashes,
  };
}
