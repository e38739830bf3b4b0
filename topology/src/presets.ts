import { parseTopology, type ModelSpec, type Topology, type TopologyInput } from './topology.ts';

/** Model sizes. `small` measures the control plane; `large` (4.2M parameters, 16.8 MB of gradient) the data plane. */
export const modelPresets = {
  small: { inputDim: 32, hiddenDim: 64, outputDim: 8 },
  medium: { inputDim: 128, hiddenDim: 1024, outputDim: 128 },
  large: { inputDim: 512, hiddenDim: 4096, outputDim: 512 },
} as const satisfies Record<string, ModelSpec>;
export type ModelPresetName = keyof typeof modelPresets;

const training = { seed: 42, globalBatch: 64, optimizer: { kind: 'adam', lr: 0.01 } } as const;

const raw = {
  tiny: { name: 'tiny', pods: 2, hostsPerPod: 2, model: modelPresets.small, training },
  demo: { name: 'demo', pods: 2, hostsPerPod: 4, model: modelPresets.small, training },
  /**
   * PaLM 540B's layout: 2 TPU v4 pods x 768 hosts x 4 chips (6144 chips), 96 host actors a process (8 host processes
   * a pod, 19 processes with the pod schedulers and the client). The in-pod collectives run as chains (linear in
   * hosts; see `CollectivesSpec`). Heartbeats every 5 s, silence tolerated for two minutes (a process busy with a
   * burst of tensors on a loaded machine is not silent), and deadlines in minutes.
   */
  'palm-540b': {
    name: 'palm-540b',
    pods: 2,
    hostsPerPod: 768,
    chipsPerHost: 4,
    hostsPerProcess: 96,
    // the in-pod collectives as chains in host order: 4 x 767 tensors a pod a step, not 2 x 768 x 767
    collectives: { inPod: 'chain' },
    model: modelPresets.small,
    training: { ...training, globalBatch: 3072 },
    compute: 'modeled',
    // modeled seconds per wall second: the cost model's 15 s step in about 0.15 s of wall time
    timeScale: 100,
    heartbeat: { intervalMs: 5000, misses: 24 },
    deadlines: { startupMs: 600_000, phaseMs: 600_000, stepMs: 1_200_000 },
  },
} as const satisfies Record<string, TopologyInput>;

export type PresetName = keyof typeof raw;
export const presetNames = Object.keys(raw) as PresetName[];

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(raw, name);
}

/** A validated preset topology (a fresh copy each call). */
export function preset(name: PresetName): Topology {
  return parseTopology(structuredClone(raw[name]), `preset ${name}`);
}
