import { type Command, Option } from 'commander';
import { z } from 'zod';
import {
  costModel,
  costModelInputsOf,
  describeIssues,
  InvalidInput,
  palmPaperFigures,
  presetNames,
  type CostModelInputs,
  type CostModelResult,
} from '@lockstep/topology';
import { loadTopology } from './load.ts';
import { parseFlags } from './roles.ts';
import { table } from './progress.ts';
import { TopologyFlag } from './flags.ts';

const CostModelFlags = z.object({
  topology: TopologyFlag,
  json: z.boolean().default(false),
  overlapBackward: z.boolean().default(false),
});

/** The figures `--json` prints under `modeled` (fractions as fractions, bytes in bytes, seconds of modeled time). */
export function modeledFigures(r: CostModelResult) {
  return {
    stepSeconds: r.stepSeconds,
    tokensPerSecond: r.tokensPerSecond,
    mfu: r.mfu,
    hfu: r.hfu,
    bytesPerHostPair: r.bytesPerHostPair,
    burstTbps: r.burstTbps,
    burstSeconds: r.burstSeconds,
    twoPodScaling: r.twoPodScaling,
  };
}

/** The cost model's inputs for a topology, or InvalidInput naming each bad field. */
function inputsOf(arg: string): { name: string; inputs: CostModelInputs; overlapBackward: boolean } {
  const t = loadTopology(arg);
  try {
    return { name: t.name, inputs: costModelInputsOf(t), overlapBackward: t.exchange.overlapBackward };
  } catch (err) {
    if (err instanceof z.ZodError) throw new InvalidInput(`cost model inputs of ${arg}`, describeIssues(err), { cause: err });
    throw err;
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const diff = (modeled: number, paper: number) => `${modeled >= paper ? '+' : ''}${((100 * (modeled - paper)) / paper).toFixed(1)}%`;

/**
 * The human report: the derived figures of `r`, the paper's beside them (its run did not overlap), the phases, and
 * the other exchange schedule (`other`) for comparison.
 */
export function costModelReport(name: string, m: CostModelInputs, r: CostModelResult, other: CostModelResult, overlapped: boolean): string {
  const p = palmPaperFigures;
  const rows: [string, string, string, string][] = [
    ['figure', 'lockstep (modeled)', 'PaLM paper', 'difference'],
    ['parameters', `${(r.parameters / 1e9).toFixed(2)}B`, `${p.parameters / 1e9}B`, diff(r.parameters, p.parameters)],
    ['step time', `${r.stepSeconds.toFixed(2)} s`, '-', ''],
    ['tokens/s', `${(r.tokensPerSecond / 1e3).toFixed(1)}K`, `${p.tokensPerSecond / 1e3}K`, diff(r.tokensPerSecond, p.tokensPerSecond)],
    ['MFU', pct(r.mfu), pct(p.mfu), diff(r.mfu, p.mfu)],
    ['HFU', pct(r.hfu), pct(p.hfu), diff(r.hfu, p.hfu)],
    [
      'bytes per host pair',
      `${r.bytesPerHostPair.toExponential(3)} B (${(r.bytesPerHostPair / 2 ** 30).toFixed(2)} GiB)`,
      '~1.3 GB (read as GiB)',
      diff(r.bytesPerHostPair, p.bytesPerHostPair),
    ],
    [
      'cross-pod burst',
      `${r.burstTbps.toFixed(1)} Tbps for ${(1000 * r.burstSeconds).toFixed(1)} ms`,
      `${p.burstTbps} Tbps`,
      diff(r.burstTbps, p.burstTbps),
    ],
    [
      'two-pod scaling',
      `${r.twoPodScaling.toFixed(3)}x (${pct(r.scalingEfficiency)})`,
      `${p.twoPodScaling}x (97%)`,
      diff(r.twoPodScaling, p.twoPodScaling),
    ],
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  const lines = rows.map((row) => `  ${row.map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c)).join('  ')}`.trimEnd());
  const ms = (s: number) => `${(1000 * s).toFixed(1)} ms`;
  const phases = (x: CostModelResult) =>
    `forward ${ms(x.phases.forward)}, backward ${ms(x.phases.backward)}, reduce-scatter ${ms(x.phases.reduceScatter)}, exchange ${ms(x.phases.exchange)}, update ${ms(x.phases.update)}, all-gather ${ms(x.phases.allGather)}`;
  return [
    `lockstep costmodel: PaLM 540B modeled on ${name} (${m.pods} pods x ${m.hostsPerPod} hosts x ${m.chipsPerHost} chips, ${m.modelParallel}-way model x ${m.dataParallel}-way data parallel a pod)${overlapped ? ', exchange overlapped with backward' : ''}`,
    ...lines,
    '',
    table([
      ['phases (one step)', phases(r)],
      [
        `overlapBackward ${!overlapped}: step`,
        `${other.stepSeconds.toFixed(2)} s, scaling ${other.twoPodScaling.toFixed(4)}x (${pct(other.scalingEfficiency)})`,
      ],
      [`overlapBackward ${!overlapped}: phases`, phases(other)],
    ]),
    '',
  ].join('\n');
}

/** `lockstep costmodel [-t topology] [--overlap-backward] [--json]`: the PaLM 540B cost model's figures for a topology (default palm-540b). */
export function addCostModelCommand(program: Command): void {
  program
    .command('costmodel')
    .description("PaLM 540B's step modeled on a topology's pods, hosts and chips, beside the PaLM paper's figures")
    .addOption(new Option('-t, --topology <preset|file>', `preset (${presetNames.join(', ')}) or YAML/JSON file`).default('palm-540b'))
    .option(
      '--overlap-backward',
      "send each layer's gradient across pods as backward produces it (also the topology's exchange.overlapBackward)",
    )
    .option('--json', 'print one JSON object as the last line of stdout')
    .action((raw) => {
      const flags = parseFlags(CostModelFlags, raw);
      const { name, inputs, overlapBackward } = inputsOf(flags.topology);
      const f = { ...flags, overlapBackward: flags.overlapBackward || overlapBackward };
      const plain = costModel(inputs, { overlapBackward: false });
      const overlapped = costModel(inputs, { overlapBackward: true });
      const r = f.overlapBackward ? overlapped : plain;
      if (f.json)
        process.stdout.write(
          `${JSON.stringify({
            topology: name,
            overlapBackward: f.overlapBackward,
            modeled: modeledFigures(r),
            phasesSeconds: r.phases,
            parameters: r.parameters,
            onePod: { stepSeconds: r.onePod.stepSeconds, tokensPerSecond: r.onePod.tokensPerSecond },
            inputs,
            paper: palmPaperFigures,
          })}\n`,
        );
      else process.stdout.write(costModelReport(name, inputs, r, f.overlapBackward ? plain : overlapped, f.overlapBackward));
    });
}
