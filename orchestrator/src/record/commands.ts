import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { describeFailure, type RunEvent } from '@lockstep/topology';
import { printLogs } from '../logs.ts';
import { parseFlags } from '../roles.ts';
import { fmtLoss, table } from '../progress.ts';
import { RUN_FILES } from './recorder.ts';
import { describeRun, findRun, listRuns, notableEvents, runsDir, type RunListing } from './runs.ts';

const ActorFlag = z
  .string()
  .regex(
    /^(client|pod\/\d{1,6}|host\/\d{1,6}\/\d{1,6}|[a-z][a-z0-9.-]{0,60})$/,
    'must be an actor (client, pod/0, host/0/1) or a process (host-0-1, nats-pod-0)',
  )
  .optional();

function outcomeText(r: RunListing): string {
  if (r.outcome === 'failed') return `failed (${r.detail})`;
  if (r.outcome === 'running') return `running (launcher pid ${r.launcherPid})`;
  if (r.outcome === 'stopped') return 'stopped (no summary: its launcher ended without one, killed?)';
  return 'done';
}

/** One line for a notable event. */
export function describeEvent(e: RunEvent): string {
  const when = new Date(e.at / 1000).toISOString().slice(11, 23);
  switch (e.kind) {
    case 'retry':
      return `${when} retry: ${describeFailure(e.failure)}`;
    case 'heal':
      return `${when} ${e.actor} healed from ${e.from}: ${e.bytes} bytes in ${e.ms.toFixed(1)} ms`;
    case 'exit':
      return `${when} ${e.actor} exited (${e.exit})${e.restart === null ? (e.expected ? '' : '; not restarted') : `; restart ${e.restart}`}`;
    case 'start':
      return `${when} ${e.actor} started (pid ${e.pid}${e.restart > 0 ? `, restart ${e.restart}` : ''})`;
    case 'fault':
      return `${when} fault ${e.action} on ${e.actor}${e.detail ? `: ${e.detail}` : ''}`;
    case 'rejected':
      return `${when} ${e.actor} rejected ${Object.entries(e.counts)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ')}`;
    case 'checkpoint':
      return `${when} checkpoint of step ${e.step} written`;
    case 'restore':
      return `${when} restore to checkpoint ${e.checkpoint} at step ${e.atStep}`;
    case 'run':
      return `${when} run ${e.state}${e.message ? `: ${e.message}` : ''}`;
    default:
      return `${when} ${e.kind} ${e.actor}`;
  }
}

/** `lockstep runs`, `lockstep status <run>`, `lockstep logs <run>`: what runs left behind (see RunRecorder). */
export function addRecordCommands(program: Command): void {
  program
    .command('runs')
    .description(`list the runs in the runs folder (LOCKSTEP_RUNS_DIR, default .lockstep/runs): id, topology, steps, outcome, hash`)
    .option('--json', 'print one JSON object as the last line of stdout')
    .action((raw) => {
      const runs = listRuns();
      if (raw.json) return void process.stdout.write(`${JSON.stringify({ runsDir: runsDir(), runs })}\n`);
      if (runs.length === 0) return void process.stdout.write(`no runs in ${runsDir()}\n`);
      process.stdout.write(
        [
          '| run | started | topology | steps | outcome | paramsHash |',
          '|---|---|---|---:|---|---|',
          ...runs.map(
            (r) =>
              `| ${r.id} | ${new Date(r.startedAt).toISOString().slice(0, 19).replace('T', ' ')} | ${r.topology} | ${r.committed}/${r.steps} | ${outcomeText(r)} | ${r.paramsHash?.slice(0, 12) ?? '-'} |`,
          ),
          '',
        ].join('\n'),
      );
    });

  program
    .command('status')
    .description('say where a run is: running or over, steps committed, the last step, retries, restarts, its latest events')
    .argument('[run]', 'a run id in the runs folder, or its directory', 'latest')
    .option('--json', 'print one JSON object as the last line of stdout')
    .action((run: string, raw) => {
      const dir = findRun(run);
      const r = describeRun(dir);
      // what a person wants to see first: not the routine starts and clean exits
      const events = notableEvents(dir).filter((e) => !(e.kind === 'start' && e.restart === 0) && !(e.kind === 'exit' && e.expected));
      const retried = events.filter((e) => e.kind === 'retry');
      const restarts = events.filter((e) => e.kind === 'exit' && e.restart !== null);
      if (raw.json)
        return void process.stdout.write(
          `${JSON.stringify({ ...r, retried: retried.length, restarts: restarts.length, events: events.slice(-20) })}\n`,
        );
      const last = r.lastStep;
      const files = Object.values(RUN_FILES).filter((f) => existsSync(join(dir, f)));
      process.stdout.write(
        `${table([
          ['run', r.id],
          ['directory', dir],
          ['topology', r.topology],
          ['state', outcomeText(r)],
          ['steps committed', `${r.committed} of ${r.steps}`],
          [
            'last step',
            last
              ? `${last.step} (attempt ${last.attempt}): loss ${fmtLoss(last.loss)}, ${last.ms.toFixed(1)} ms, ${((Date.now() - last.at / 1000) / 1000).toFixed(1)} s ago`
              : '-',
          ],
          ['paramsHash', r.paramsHash ?? '-'],
          ['retried attempts', String(retried.length)],
          ['process restarts', String(restarts.length)],
          ...(r.modeled
            ? ([
                [
                  'modeled step',
                  `${r.modeled.stepSeconds.toFixed(3)} s, ${(r.modeled.tokensPerSecond / 1e3).toFixed(1)}K tokens/s, MFU ${(100 * r.modeled.mfu).toFixed(1)}%, scaling ${r.modeled.twoPodScaling.toFixed(3)}x, control plane ${r.modeled.controlMsPerStep.toFixed(1)} ms a step`,
                ],
              ] as [string, string][])
            : []),
          ['files', [...files, ...(existsSync(join(dir, 'logs')) ? ['logs/'] : [])].join(', ')],
        ])}\n${
          events.length > 0
            ? `latest events:\n${events
                .slice(-8)
                .map((e) => `  ${describeEvent(e)}`)
                .join('\n')}\n`
            : ''
        }`,
      );
    });

  program
    .command('logs')
    .description("print every process's log of a run merged in time order, readably (pino-pretty)")
    .argument('[run]', 'a run id in the runs folder, or its directory', 'latest')
    .option('-f, --follow', 'keep printing new lines until the run is over')
    .option('--actor <name>', 'only this actor (client, pod/0, host/0/1) or process (host-0-1, nats-pod-0)')
    .action(async (run: string, raw) => {
      const f = parseFlags(z.object({ follow: z.boolean().default(false), actor: ActorFlag }), raw);
      await printLogs(findRun(run), { follow: f.follow, actor: f.actor });
    });
}
