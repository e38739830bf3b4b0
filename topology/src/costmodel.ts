import { CostModelInputs, type ExchangeSpec } from './palm.ts';

/**
 * Training speed at large scale of the parallel block over the serial one (PaLM section 2: "roughly 15% faster");
 * a serial-block model's forward and backward take this factor longer.
 */
export const PARALLEL_BLOCK_SPEEDUP = 1.15;

/** How the cross-pod exchange is scheduled: the topology's `exchange` (see `ExchangeSpec`). */
export type ExchangeOptions = ExchangeSpec;

/** Seconds each phase of one step takes on every host (all hosts of a pod run in lockstep). */
export interface PhaseSeconds {
  forward: number;
  backward: number;
  /** In-pod reduce-scatter left after backward (all of it, or the last layer's share when overlapped). */
  reduceScatter: number;
  /** Cross-pod exchange left after the reduce-scatter (all of it, or the last layer's share when overlapped). */
  exchange: number;
  update: number;
  allGather: number;
}

/** What the cost model derives for one step. Seconds are modeled time; fractions are fractions (0.46, not 46). */
export interface StepEstimate {
  /** N, from the shape: per layer Q and O (d x HQ each), K and V (d x kvHeads Q each), the MLP, one layer-norm scale; plus the shared embedding V d and a final norm. */
  parameters: number;
  /** Model FLOPs per token, PaLM Appendix B: 6N + 12 L H Q T. */
  modelFlopsPerToken: number;
  /** Hardware FLOPs per token: model FLOPs plus the rematerialized share of the forward pass, r (2N + 4 L H Q T). */
  hardwareFlopsPerToken: number;
  /** Tokens in one global batch: sequences x sequence length. */
  tokensPerStep: number;
  phases: PhaseSeconds;
  /** Sum of the phases (they run one after another). */
  stepSeconds: number;
  tokensPerSecond: number;
  /** Model FLOPs utilization: tokens/s x model FLOPs per token / (all chips x peak). */
  mfu: number;
  /** Hardware FLOPs utilization: tokens/s x hardware FLOPs per token / (all chips x peak). */
  hfu: number;
  /** Bytes one host sends to its matching host of each other pod per step: N x gradient bytes / hosts per pod. */
  bytesPerHostPair: number;
  /** Every host's cross-pod sending rate added up, Tbit/s (0 with one pod). */
  burstTbps: number;
  /** How long the whole cross-pod transfer takes (all of it, overlapped or not), seconds. */
  burstSeconds: number;
}

/** The cost model's figures for one configuration, plus weak scaling against one pod. */
export interface CostModelResult extends StepEstimate {
  /** Throughput of all pods over that of one pod with 1/pods of the global batch (weak scaling). */
  twoPodScaling: number;
  /** twoPodScaling / pods: the fraction of perfect weak scaling. */
  scalingEfficiency: number;
  /** The one-pod run the scaling compares against. */
  onePod: StepEstimate;
}

/** N for the shape in `inputs` (see `StepEstimate.parameters`). */
export function parameterCountOf(m: CostModelInputs): number {
  const attention = 2 * m.dModel * m.heads * m.headDim + 2 * m.dModel * m.kvHeads * m.headDim;
  const mlp = m.mlpMatrices * m.dModel * m.dFf;
  return m.layers * (attention + mlp + m.dModel) + m.vocabulary * m.dModel + m.dModel;
}

/** Attention's score and value FLOPs per token in forward, PaLM Appendix B's 12 L H Q T divided by 3: 4 L H Q T. */
const attentionForwardFlops = (m: CostModelInputs) => 4 * m.layers * m.heads * m.headDim * m.sequenceLength;

/**
 * Completion time of a pipeline whose `items` each pass through stages taking `stageSeconds` apiece, in order,
 * one item at a time per stage: items x the slowest stage, plus one pass through the others.
 */
export function pipelineSeconds(items: number, stageSeconds: readonly number[]): number {
  const slowest = Math.max(...stageSeconds);
  return items * slowest + stageSeconds.reduce((a, b) => a + b, 0) - slowest;
}

/**
 * One step of `inputs` (already validated; see `costModel` for the checked entry point). Every host of a pod holds
 * N / hostsPerPod of the gradient after the reduce-scatter and exchanges that shard with its matching host of
 * each other pod. Phases:
 * - forward  = tokens per pod x (2N + 4 L H Q T) / (chips per pod x peak x efficiency)
 * - backward = tokens per pod x (2 + r)(2N + 4 L H Q T) / (same); both x 1.15 for a serial block
 * - reduce-scatter, all-gather = (D - 1) / D x (N / M) x gradient bytes / ICI bytes/s per chip (ring bandwidth term)
 * - exchange = bytes per host pair x 8 / min(DCN rate of a host, flows x flow rate) x (pods - 1)
 * - update   = N / chips per pod x update bytes per parameter / HBM bytes/s
 */
export function estimateStep(m: CostModelInputs, options: ExchangeOptions): StepEstimate {
  const parameters = parameterCountOf(m);
  const forwardFlops = 2 * parameters + attentionForwardFlops(m);
  const modelFlopsPerToken = 3 * forwardFlops;
  const hardwareFlopsPerToken = modelFlopsPerToken + m.rematerialization * forwardFlops;
  const tokensPerStep = m.sequencesPerStep * m.sequenceLength;
  const tokensPerPod = tokensPerStep / m.pods;
  const chipsPerPod = m.hostsPerPod * m.chipsPerHost;
  const blockFactor = m.parallelBlock ? 1 : PARALLEL_BLOCK_SPEEDUP;
  const sustained = chipsPerPod * m.peakFlopsPerChip * m.computeEfficiency;
  const forward = ((tokensPerPod * forwardFlops) / sustained) * blockFactor;
  const backward = ((tokensPerPod * (2 + m.rematerialization) * forwardFlops) / sustained) * blockFactor;
  const collective =
    (((m.dataParallel - 1) / m.dataParallel) * (parameters / m.modelParallel) * m.gradientBytesPerElement) / m.iciBytesPerSecondPerChip;
  const bytesPerHostPair = (parameters * m.gradientBytesPerElement) / m.hostsPerPod;
  const hostBitsPerSecond = Math.min(m.dcnGbitPerHost, m.flowsPerHostPair * m.flowGbit) * 1e9;
  const exchangeAll = m.pods > 1 ? ((m.pods - 1) * bytesPerHostPair * 8) / hostBitsPerSecond : 0;
  const update = ((parameters / chipsPerPod) * m.updateBytesPerParameter) / m.hbmBytesPerSecondPerChip;
  let reduceScatter = collective;
  let exchange = exchangeAll;
  if (options.overlapBackward) {
    // Layer by layer: backward, then that layer's reduce-scatter, then its exchange. What outlasts backward is exposed.
    const perLayer = [backward, collective, exchangeAll].map((s) => s / m.layers);
    const tail = pipelineSeconds(m.layers, perLayer) - backward;
    reduceScatter = Math.min(collective, Math.max(0, pipelineSeconds(m.layers, perLayer.slice(0, 2)) - backward));
    exchange = Math.max(0, tail - reduceScatter);
  }
  const phases: PhaseSeconds = { forward, backward, reduceScatter, exchange, update, allGather: collective };
  const stepSeconds = forward + backward + reduceScatter + exchange + update + collective;
  const tokensPerSecond = tokensPerStep / stepSeconds;
  const peakAll = m.pods * chipsPerPod * m.peakFlopsPerChip;
  return {
    parameters,
    modelFlopsPerToken,
    hardwareFlopsPerToken,
    tokensPerStep,
    phases,
    stepSeconds,
    tokensPerSecond,
    mfu: (tokensPerSecond * modelFlopsPerToken) / peakAll,
    hfu: (tokensPerSecond * hardwareFlopsPerToken) / peakAll,
    bytesPerHostPair,
    burstTbps: m.pods > 1 ? (m.pods * m.hostsPerPod * hostBitsPerSecond) / 1e12 : 0,
    burstSeconds: exchangeAll,
  };
}

/**
 * The cost model: validates `inputs` (throws a ZodError naming the field) and derives one step of all pods and of
 * one pod with 1/pods of the global batch, whose throughput ratio is the weak scaling.
 */
export function costModel(inputs: CostModelInputs, options: ExchangeOptions = { overlapBackward: false }): CostModelResult {
  const m = CostModelInputs.parse(inputs);
  const all = estimateStep(m, options);
  const onePod = estimateStep({ ...m, pods: 1, sequencesPerStep: m.sequencesPerStep / m.pods }, options);
  const twoPodScaling = all.tokensPerSecond / onePod.tokensPerSecond;
  return { ...all, twoPodScaling, scalingEfficiency: twoPodScaling / m.pods, onePod };
}
