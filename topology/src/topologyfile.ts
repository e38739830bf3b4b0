import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InvalidTopology } from './errors.ts';
import { isPresetName, preset, presetNames } from './presets.ts';
import { parseTopology, Topology } from './topology.ts';

/**
 * A topology file names only what it changes: its fields are laid over a
 * base topology, the preset it names in `extends` (default `demo`, the CLI's
 * default topology), objects merged field by field, lists and values replaced.
 * A file that does not name itself is called after its file (`one-pod.yaml`
 * -> `one-pod`). The result is validated as a whole (`Topology`), so a bad
 * field is named as in a complete file. `$schema` (an editor's hint) is
 * ignored. Example, a file holding only
 *
 *   # yaml-language-server: $schema=./topology.schema.json
 *   pods: 1
 *   hostsPerPod: 2
 *
 * is `demo` with one pod of two hosts, named after the file.
 */
export const DEFAULT_BASE = 'demo';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `over` laid over `base`: objects merged key by key, anything else (lists, values) replaced. */
export function overlay(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? overlay(base[k], v) : v;
  return out;
}

/** A file's name as a topology name: lowercase letters, digits and dashes (`My Pods.yaml` -> `my-pods`). */
function nameFromSource(source: string): string | undefined {
  const stem = (source.split(/[\\/]/).pop() ?? '').replace(/\.(ya?ml|json)$/i, '');
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return /^[a-z0-9][a-z0-9-]*$/.test(name) ? name : undefined;
}

/** A parsed topology file (YAML/JSON value) as a whole topology: over its base, named, validated. Throws InvalidTopology. */
export function resolveTopologyFile(value: unknown, source: string): Topology {
  if (!isObject(value)) throw new InvalidTopology(source, ['(file): must be a mapping of topology fields (pods, hostsPerPod, ...)']);
  const { extends: base = DEFAULT_BASE, $schema: _schema, ...fields } = value;
  if (typeof base !== 'string' || !isPresetName(base))
    throw new InvalidTopology(source, [`extends: must be one of ${presetNames.join(', ')}; got ${JSON.stringify(base)}`]);
  const named = 'name' in fields ? fields : { ...fields, name: nameFromSource(source) ?? `${base}-custom` };
  return parseTopology(overlay(preset(base), named), source);
}

/** YAML or JSON text (JSON is YAML) of a topology file, resolved (see resolveTopologyFile). Throws InvalidTopology. */
export function parseTopologyFileText(text: string, source: string): Topology {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw new InvalidTopology(source, [`(file): not valid YAML or JSON: ${(cause as Error).message.split('\n')[0]}`], { cause });
  }
  return resolveTopologyFile(value, source);
}

/** Drop every `required` list of a JSON Schema: in a file every field may be left to the base. */
function optionalEverywhere(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(optionalEverywhere);
  if (!isObject(s)) return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) if (k !== 'required') out[k] = optionalEverywhere(v);
  return out;
}

/**
 * The JSON Schema of topology files (draft 2020-12, from the `Topology` schema's input side): every field optional,
 * plus `extends` and `$schema`. Editors that read `# yaml-language-server: $schema=...` complete and check with it.
 */
export function topologyJsonSchema(): Record<string, unknown> {
  const s = optionalEverywhere(z.toJSONSchema(Topology, { io: 'input' })) as Record<string, unknown>;
  const properties = {
    $schema: { type: 'string', description: 'this schema, for editors' },
    extends: {
      type: 'string',
      enum: [...presetNames],
      description: `the preset this file changes (default ${DEFAULT_BASE}); the file's fields are laid over it`,
    },
    ...(s.properties as Record<string, unknown>),
  };
  return { ...s, title: 'lockstep topology file', properties };
}
