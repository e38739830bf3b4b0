import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidTopology, overlay, parseTopologyFileText, preset, topologyJsonSchema } from '../src/index.ts';

describe('topology files name only what they change', () => {
  it('a file with only pods and hostsPerPod is the demo preset with those, named after the file', () => {
    const t = parseTopologyFileText('pods: 1\nhostsPerPod: 2\n', 'dir/one-pod.yaml');
    expect(t).toEqual({ ...preset('demo'), name: 'one-pod', pods: 1, hostsPerPod: 2 });
  });

  it('extends names the preset; nested objects are merged field by field, lists replaced', () => {
    const t = parseTopologyFileText(
      'extends: tiny\nname: slow-tiny\ndeadlines: {phaseMs: 5000}\nfaults: {rules: [{action: drop, probability: 0.1}]}\n',
      'x.yaml',
    );
    const tiny = preset('tiny');
    expect(t.name).toBe('slow-tiny');
    expect(t.pods).toBe(tiny.pods);
    expect(t.deadlines).toEqual({ ...tiny.deadlines, phaseMs: 5000 });
    expect(t.faults.rules).toHaveLength(1);
    expect(overlay({ a: { b: 1, c: [1, 2] } }, { a: { c: [3] } })).toEqual({ a: { b: 1, c: [3] } });
  });

  it('a complete file reads as it did before', () => {
    const demo = preset('demo');
    expect(parseTopologyFileText(JSON.stringify({ ...demo, name: 'mine' }), 'mine.json')).toEqual({ ...demo, name: 'mine' });
  });

  it('a bad extends or a bad field is named, as in a complete file', () => {
    expect(() => parseTopologyFileText('extends: huge\n', 'a.yaml')).toThrow(/extends: must be one of tiny, demo, palm-540b; got "huge"/);
    expect(() => parseTopologyFileText('pods: 0\n', 'a.yaml')).toThrow(InvalidTopology);
    expect(() => parseTopologyFileText('pods: 0\n', 'a.yaml')).toThrow(/pods: must be >= 1/);
    expect(() => parseTopologyFileText('- 1\n', 'a.yaml')).toThrow(/must be a mapping of topology fields/);
  });

  it('topologies/topology.schema.json is the schema topologyJsonSchema() gives, and every field is optional', () => {
    const file = join(import.meta.dirname, '..', '..', 'topologies', 'topology.schema.json');
    const schema = topologyJsonSchema();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(schema);
    expect(JSON.stringify(schema)).not.toMatch(/"required"/);
    expect((schema.properties as Record<string, { enum?: string[] }>).extends.enum).toEqual(['tiny', 'demo', 'palm-540b']);
  });

  it('the example topology files parse', () => {
    for (const f of ['one-pod.yaml', 'demo-large.yaml']) {
      const path = join(import.meta.dirname, '..', '..', 'topologies', f);
      const text = readFileSync(path, 'utf8');
      expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./topology.schema.json');
      expect(parseTopologyFileText(text, path).name).toBe(f.replace('.yaml', ''));
    }
  });
});
