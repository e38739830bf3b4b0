import { z } from 'zod';

const whole = (min: number, max: number) =>
  z.number({ error: 'must be a number' }).int('must be a whole number').min(min, `must be >= ${min}`).max(max, `must be <= ${max}`);
const positive = (max: number) => z.number({ error: 'must be a number' }).positive('must be > 0').max(max, `must be <= ${max}`);
const fraction = (what: string) => z.number({ error: 'must be a number' }).gt(0, `must be > 0 (${what})`).max(1, `must be <= 1 (${what})`);

/**
 * The inputs of the cost model (`costmodel.ts`): the transformer's shape, the batch, the chips, the in-pod
 * layout and the networks. Each field's docstring names its unit and where the PaLM 540B value comes from:
 * "PaLM" is Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways" (arXiv 2204.02311);
 * "Cloud TPU v4" is Google's Cloud TPU v4 system-architecture page; "Pope et al." is Pope et al. 2022,
 * "Efficiently Scaling Transformer Inference" (arXiv 2211.05102).
 * Fields marked *assumption* have no published value for the PaLM run; the README says so beside the results.
 */
const CostModelFields = z
  .object({
    /** Transformer layers L (PaLM section 2.1, Table 1: 118). */
    layers: whole(1, 10_000),
    /** Model width d_model (PaLM section 2.1, Table 1: 18432). */
    dModel: whole(1, 1_000_000),
    /** Query heads H (PaLM section 2.1, Table 1: 48). */
    heads: whole(1, 10_000),
    /** Head size Q, the width of one query/key/value head (PaLM section 2.1: "attention head size is always 256"). */
    headDim: whole(1, 100_000),
    /** Key/value heads: 1 for multi-query attention (PaLM section 2: keys and values shared across heads). */
    kvHeads: whole(1, 10_000),
    /** Feed-forward width d_ff (PaLM section 2.1: always 4 x d_model, 73728). */
    dFf: whole(1, 10_000_000),
    /** Weight matrices in the MLP: 3 for SwiGLU (PaLM section 2: "three matrix multiplications"), 2 for a plain MLP. */
    mlpMatrices: whole(2, 3),
    /** Vocabulary size V, one embedding shared by input and output (PaLM section 2: 256k SentencePiece tokens). */
    vocabulary: whole(1, 100_000_000),
    /** Sequence length T in tokens (PaLM section 5: 2048). */
    sequenceLength: whole(1, 10_000_000),
    /**
     * Attention and MLP computed in parallel from one layer norm, y = x + MLP(LN(x)) + Attn(LN(x)) (PaLM section 2).
     * PaLM reports the parallel form "roughly 15% faster" at scale; the serial form's compute is modeled 1.15x slower.
     */
    parallelBlock: z.boolean(),
    /**
     * Sequences in one global batch. PaLM section 5 ramps the batch 512 -> 1024 -> 2048 sequences (at steps 50k
     * and 115k); the 238.3K tokens/s of section 4.1 is the final 2048-sequence stage, which is what is modeled.
     */
    sequencesPerStep: whole(1, 100_000_000),
    /** Pods (islands) joined by the DCN (PaLM section 4: 2). */
    pods: whole(1, 64),
    /** Hosts in a pod (PaLM section 4: 768). */
    hostsPerPod: whole(1, 1_000_000),
    /** TPU chips a host drives (PaLM section 4: 3072 chips on 768 hosts, 4 a host). */
    chipsPerHost: whole(1, 64),
    /** Peak bf16 FLOP/s of one chip (Cloud TPU v4: 275 teraflops). */
    peakFlopsPerChip: positive(1e18),
    /** Model-parallel ways inside a pod (PaLM section 4: 12). model x data ways = chips in a pod. */
    modelParallel: whole(1, 1_000_000),
    /** Fully sharded data-parallel ways inside a pod (PaLM section 4: 256). */
    dataParallel: whole(1, 1_000_000),
    /**
     * Fraction of the forward pass recomputed in the backward pass (rematerialization; counted by HFU, not MFU,
     * PaLM Appendix B). *assumption*: PaLM does not say which activations it rematerialized; 1 is full recomputation.
     */
    rematerialization: z.number({ error: 'must be a number' }).min(0, 'must be >= 0').max(1, 'must be <= 1'),
    /**
     * Fraction of peak FLOP/s the in-pod compute (matmuls with their model-parallel collectives) sustains in forward
     * and backward. 0.76 is the MFU Pope et al. measured for PaLM 540B on TPU v4 processing 2048-token inputs in
     * large batches (abstract): the same model, chips and sequence length, forward only.
     */
    computeEfficiency: fraction('a fraction of peak'),
    /**
     * In-pod collective bandwidth per chip in bytes/s, the rate at which one chip's share of a reduce-scatter or
     * all-gather moves (Cloud TPU v4: all-reduce bandwidth 1.1 PB/s per 4096-chip pod = 268.6 GB/s a chip).
     */
    iciBytesPerSecondPerChip: positive(1e15),
    /** HBM bandwidth per chip in bytes/s, which bounds the optimizer update (Cloud TPU v4: 1200 GB/s). */
    hbmBytesPerSecondPerChip: positive(1e15),
    /**
     * HBM bytes the optimizer update touches per parameter: fp32 parameter, first and second moments read and
     * written (24) plus the bf16 local and remote gradients read (4). PaLM section 5 uses Adafactor without
     * factorization (Adam-like, two moments). *assumption* on the storage precisions.
     */
    updateBytesPerParameter: positive(1000),
    /** Bytes per gradient element sent across pods: 2 for bf16. *assumption*: bf16, the TPU's training precision. */
    gradientBytesPerElement: positive(16),
    /**
     * DCN bandwidth of one host, Gbit/s each way. *assumption*: 100; Google publishes none for TPU v4 hosts (later
     * generations: 2 x 100 Gbit/s NICs a v5e host of 8 chips, 50 Gbit/s a chip on v5p, Cloud TPU docs).
     */
    dcnGbitPerHost: positive(1e6),
    /** Flows a host pair's transfer is split into (PaLM section 4: "many smaller flows"). *assumption*: 16. */
    flowsPerHostPair: whole(1, 100_000),
    /** Throughput of one DCN flow, Gbit/s. *assumption*: 10 (one flow rides one path of the fabric). */
    flowGbit: positive(1e6),
  })
  .strict();

/** `CostModelFields` with the checks that tie fields together. */
export const CostModelInputs = CostModelFields.superRefine((m, ctx) => {
  const chips = m.hostsPerPod * m.chipsPerHost;
  if (m.modelParallel * m.dataParallel !== chips)
    ctx.addIssue({
      code: 'custom',
      path: ['dataParallel'],
      message: `modelParallel x dataParallel must equal the chips in a pod (hostsPerPod x chipsPerHost = ${chips}); got ${m.modelParallel} x ${m.dataParallel}`,
    });
  if (m.sequencesPerStep % m.pods !== 0)
    ctx.addIssue({ code: 'custom', path: ['sequencesPerStep'], message: `must be divisible by pods (${m.pods})` });
});
export type CostModelInputs = z.infer<typeof CostModelInputs>;

/** PaLM 540B on two TPU v4 pods, as trained (sources in the field docs of `CostModelInputs`). */
export const palm540b: CostModelInputs = {
  layers: 118,
  dModel: 18432,
  heads: 48,
  headDim: 256,
  kvHeads: 1,
  dFf: 4 * 18432,
  mlpMatrices: 3,
  vocabulary: 256_000,
  sequenceLength: 2048,
  parallelBlock: true,
  sequencesPerStep: 2048,
  pods: 2,
  hostsPerPod: 768,
  chipsPerHost: 4,
  peakFlopsPerChip: 275e12,
  modelParallel: 12,
  dataParallel: 256,
  rematerialization: 1,
  computeEfficiency: 0.76,
  iciBytesPerSecondPerChip: 1.1e15 / 4096,
  hbmBytesPerSecondPerChip: 1200e9,
  updateBytesPerParameter: 28,
  gradientBytesPerElement: 2,
  dcnGbitPerHost: 100,
  flowsPerHostPair: 16,
  flowGbit: 10,
};

/**
 * What a topology may override of `palm540b`. Its pods always come from the topology; its hosts per pod and chips per
 * host too unless given here: a run with fewer hosts than the modeled system (say 4 hosts a pod modeling PaLM's 768)
 * takes the modeled pod's phase times on each of its hosts (every host of a pod runs each phase in lockstep, so each
 * run host stands for hostsPerPod / its own hosts of them), and the figures are the modeled system's.
 */
export const CostModelOverrides = CostModelFields.omit({ pods: true }).partial().strict();

/**
 * How a topology's hosts spend compute time: `real` (the small model's own time), `modeled` (each phase takes
 * the cost model's time for PaLM 540B, optionally with `{ modeled: { ...overrides } }`), or `{ fixedMs }`: each of
 * forward, backward and update takes this long, ms in [0, 60000] (the host computes the real numerics, then waits
 * out the rest on the run's clock instead of holding the thread; a benchmark knob that makes compute a known quantity).
 */
export const ComputeSpec = z.union(
  [
    z.literal('real'),
    z.literal('modeled'),
    z.object({ modeled: CostModelOverrides }).strict(),
    z
      .object({
        fixedMs: z.number({ error: 'must be a number' }).min(0, 'must be >= 0').max(60_000, 'must be <= 60000'),
      })
      .strict(),
  ],
  {
    error: 'must be "real", "modeled", { modeled: { <cost model input>: value, ... } } or { fixedMs: <ms> }',
  },
);
export type ComputeSpec = z.infer<typeof ComputeSpec>;

/**
 * How the cross-pod exchange is scheduled (topology field `exchange`). It changes modeled time only: the hosts'
 * protocol is the same either way.
 */
export const ExchangeSpec = z
  .object({
    /**
     * false (PaLM as trained, the default): backward ends, then the whole gradient is reduce-scattered in the pod and
     * sent across. true: each layer's gradient is reduce-scattered and sent across as backward produces it (a pipeline
     * over layers), so only what outlasts backward is left in the step (PaLM section 4 names the missing overlap as
     * the remaining loss).
     */
    overlapBackward: z.boolean({ error: 'must be true or false' }).default(false),
  })
  .strict();
export type ExchangeSpec = z.infer<typeof ExchangeSpec>;

/**
 * Modeled seconds per wall second of a `compute: modeled` run (topology field `timeScale`): each phase's modeled time
 * is waited out divided by this. In [1, 1e6]; 100 (the default) runs PaLM 540B's 15 s modeled step in about 0.15 s.
 */
export const TimeScale = z
  .number({ error: 'must be a number' })
  .min(1, 'must be >= 1 (modeled seconds per wall second)')
  .max(1_000_000, 'must be <= 1000000');

/** Whether a topology's hosts take the cost model's time (`compute: modeled` or `{ modeled: overrides }`). */
export function isModeled(compute: ComputeSpec): boolean {
  return compute === 'modeled' || (typeof compute === 'object' && 'modeled' in compute);
}

/** The fixed time of each compute phase (ms) when the topology says `compute: { fixedMs }`; otherwise undefined. */
export function fixedComputeMs(compute: ComputeSpec): number | undefined {
  return typeof compute === 'object' && 'fixedMs' in compute ? compute.fixedMs : undefined;
}

/**
 * The cost model inputs of a topology: `palm540b` with the topology's pods, hosts per pod and chips per host and
 * its overrides (which may name the modeled pod's hosts and chips, see `CostModelOverrides`). Unless overridden,
 * the model-parallel ways are the largest divisor of the modeled pod's chips up to PaLM's 12, and the data-parallel
 * ways the rest.
 * Throws a ZodError naming the field when the result is inconsistent (e.g. model x data ways != chips).
 */
export function costModelInputsOf(t: { pods: number; hostsPerPod: number; chipsPerHost: number; compute: ComputeSpec }): CostModelInputs {
  const overrides = typeof t.compute === 'object' && 'modeled' in t.compute ? t.compute.modeled : {};
  const chips = (overrides.hostsPerPod ?? t.hostsPerPod) * (overrides.chipsPerHost ?? t.chipsPerHost);
  const modelParallel = overrides.modelParallel ?? largestDivisorAtMost(chips, palm540b.modelParallel);
  return CostModelInputs.parse({
    ...palm540b,
    pods: t.pods,
    hostsPerPod: t.hostsPerPod,
    chipsPerHost: t.chipsPerHost,
    modelParallel,
    dataParallel: Math.max(1, Math.floor(chips / modelParallel)),
    ...overrides,
  });
}

function largestDivisorAtMost(n: number, most: number): number {
  for (let d = Math.min(n, most); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/**
 * What the PaLM paper (Chowdhery et al. 2022) reports for PaLM 540B on two TPU v4 pods. Comparison constants only
 * (the CLI's "paper" column and the tests' tolerances); nothing in the cost model reads them.
 */
export const palmPaperFigures = {
  /** Table 1: 540.35B parameters. */
  parameters: 540.35e9,
  /** Section 4.1: 238.3K tokens/s (batch 2048 x 2048 tokens). */
  tokensPerSecond: 238.3e3,
  /** Section 4.1 and Appendix B: model FLOPs utilization 46.2%. */
  mfu: 0.462,
  /** Section 4.1 and Appendix B: hardware FLOPs utilization 57.8%. */
  hfu: 0.578,
  /**
   * Section 4: "approximately 1.3 GB" a host pair, read as GiB: 540.35B bf16 gradients over 768 hosts are
   * 1.407e9 B = 1.31 GiB (read as 1.3e9 B, the shape's bytes are 8% more).
   */
  bytesPerHostPair: 1.3 * 2 ** 30,
  /** Section 4: "a burst of 81 Tbps" across the DCN. */
  burstTbps: 81,
  /** Section 4: about 1.95x the throughput of one pod (97% of perfect weak scaling). */
  twoPodScaling: 1.95,
} as const;
