import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { InvalidInput } from './errors.ts';
import { describeIssues } from './issues.ts';
import { DeadlineSpec, FaultSpec, HeartbeatSpec, RecoverySpec } from './topology.ts';

/**
 * A fault-injection scenario: a topology, a number of steps, a timeline of
 * process faults and seeded message faults, and the outcome expected.
 */
export const ProcessFault = z
  .object({
    /** Inject when the client has committed this step. */
    atStep: z.number().int().min(0),
    /** Then wait this long. */
    afterMs: z.number().int().min(0).default(0),
    /** stop = SIGSTOP (a straggler), cont = SIGCONT, kill = SIGKILL. */
    action: z.enum(['stop', 'cont', 'kill'], { error: 'must be stop, cont or kill' }),
    target: z.string().regex(/^(client|pod\/\d+|host\/\d+\/\d+)$/, 'must be client, pod/<p> or host/<p>/<h>'),
  })
  .strict();
export type ProcessFault = z.output<typeof ProcessFault>;

export const Scenario = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lowercase letters, digits and dashes'),
    description: z.string().default(''),
    /** A preset name. */
    topology: z.string().min(1),
    steps: z.number().int().min(1, 'must be >= 1'),
    seed: z.number().int().min(0).optional(),
    deadlines: DeadlineSpec.partial().optional(),
    heartbeat: HeartbeatSpec.partial().optional(),
    recovery: RecoverySpec.partial().optional(),
    /** Seeded message faults (the topology's `faults`). */
    faults: FaultSpec.optional(),
    timeline: z.array(ProcessFault).default([]),
    expect: z.discriminatedUnion('outcome', [
      z.object({ outcome: z.literal('recovers') }).strict(),
      /** `error` is a regular expression the run's error must match. */
      z.object({ outcome: z.literal('fails'), error: z.string().min(1) }).strict(),
    ]),
  })
  .strict();
export type Scenario = z.output<typeof Scenario>;

export function parseScenarioText(text: string, source: string): Scenario {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw new InvalidInput(`scenario ${source}`, [`(file): not valid YAML: ${(cause as Error).message.split('\n')[0]}`], { cause });
  }
  const r = Scenario.safeParse(value);
  if (!r.success) throw new InvalidInput(`scenario ${source}`, describeIssues(r.error));
  return r.data;
}

/** JSON Schema of scenario files, for editors. */
export function scenarioJsonSchema(): unknown {
  return z.toJSONSchema(Scenario, { io: 'input' });
}
