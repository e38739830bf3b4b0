import { fromCallback } from 'xstate';
import { runLogAppend, type RunLogRecord } from '@lockstep/topology';
import type { RunLogCommand, RunLogEvent } from '../client/client.machine.ts';
import type { SimClock } from './clock.ts';

/**
 * The run log in memory for `lockstep sim`: the same rule as the JetStream
 * stream (`runLogAppend`), answered after `latencyMs` of simulated time. It
 * outlives a crashed client, as the stream does.
 */
export class MemRunLog {
  readonly records: RunLogRecord[] = [];
  conflicts = 0;

  constructor(
    private readonly clock: SimClock,
    private readonly latencyMs = 1,
  ) {}

  last(): RunLogRecord | undefined {
    return this.records.at(-1);
  }

  /** The client machine's `runlog` actor over this log. */
  actor() {
    return fromCallback<RunLogCommand>(({ receive, sendBack }) => {
      let alive = true;
      receive((cmd) => {
        if (cmd.type === 'log.read') {
          const record = this.records[cmd.step];
          this.clock.setTimeout(() => {
            if (alive) sendBack({ type: 'log.record', step: cmd.step, record } satisfies RunLogEvent);
          }, this.latencyMs);
          return;
        }
        const rec: RunLogRecord = { ...cmd.record, at: new Date(this.clock.now()).toISOString() };
        const d = runLogAppend(this.records, rec);
        if (d.kind === 'appended') this.records.push(rec);
        if (d.kind === 'conflict') this.conflicts++;
        this.clock.setTimeout(() => {
          if (!alive) return;
          sendBack(
            d.kind === 'conflict'
              ? ({ type: 'log.failed', step: rec.step, problem: 'conflict', detail: d.reason } satisfies RunLogEvent)
              : ({ type: 'log.appended', step: rec.step } satisfies RunLogEvent),
          );
        }, this.latencyMs);
      });
      return () => {
        alive = false;
      };
    });
  }
}
