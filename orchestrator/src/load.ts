import { existsSync } from 'node:fs';
import { isPresetName, modelPresets, parseTopology, parseTopologyFileText, preset, presetNames, type Topology } from '@lockstep/topology';
import { UsageError } from './errors.ts';
import { readInputFile } from './input.ts';

/** `--topology` takes a preset name or a YAML/JSON file (laid over a preset: see resolveTopologyFile); `--model` swaps in a model preset; `--dispatch-depth` sets `dispatch.depth`, `--collectives` `collectives.inPod`. */
export function loadTopology(
  arg: string,
  overrides: { model?: string; hostsPerProcess?: number; dispatchDepth?: number; inPod?: 'direct' | 'chain' } = {},
): Topology {
  let t: Topology;
  if (isPresetName(arg)) {
    t = preset(arg);
  } else {
    let text: string;
    try {
      text = readInputFile(arg, '--topology');
    } catch (err) {
      if (!existsSync(arg))
        throw new UsageError(`--topology: "${arg}" is neither a preset (${presetNames.join(', ')}) nor a readable file (ENOENT)`);
      throw err;
    }
    t = parseTopologyFileText(text, arg); // a file names only what it changes of the preset it extends
  }
  if (overrides.model !== undefined) {
    if (!Object.hasOwn(modelPresets, overrides.model))
      throw new UsageError(`--model: must be one of ${Object.keys(modelPresets).join(', ')}; got "${overrides.model}"`);
    t = parseTopology(
      { ...t, model: modelPresets[overrides.model as keyof typeof modelPresets] },
      `${arg} with --model ${overrides.model}`,
    );
  }
  if (overrides.hostsPerProcess !== undefined)
    t = parseTopology({ ...t, hostsPerProcess: overrides.hostsPerProcess }, `${arg} with --hosts-per-process`);
  if (overrides.dispatchDepth !== undefined)
    t = parseTopology({ ...t, dispatch: { ...t.dispatch, depth: overrides.dispatchDepth } }, `${arg} with --dispatch-depth`);
  if (overrides.inPod !== undefined)
    t = parseTopology({ ...t, collectives: { ...t.collectives, inPod: overrides.inPod } }, `${arg} with --collectives`);
  return t;
}
