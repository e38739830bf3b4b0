import type { NatsConnection } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { fromCallback } from 'xstate';
import type { RunLogCommand, RunLogEvent } from './client.machine.ts';
import { describeIssues, runLogStream, runLogSubject, RunLogRecord } from '@lockstep/topology';
import { RunLogConflict, RunLogUnavailable } from '../errors.ts';
import type { RunClock } from '../clock.ts';

/**
 * A run's durable log of committed steps, in a JetStream stream on disk. The
 * client appends a step's record when it decides to commit it, before telling
 * any pod; a restarted client reads the last record and finishes that commit.
 * Each append expects the last sequence to be the step number, so a second
 * commit of a step (a zombie client, a replayed decision) is refused.
 */
export class RunLog {
  private constructor(
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly runId: string,
    private readonly log: Logger,
    private readonly timeoutMs: number,
  ) {}

  static async open(nc: NatsConnection, runId: string, log: Logger, timeoutMs = 5000): Promise<RunLog> {
    return (await RunLog.reach(nc, runId, log, timeoutMs, true))!;
  }

  /**
   * The run's log if its stream exists; undefined when it does not (never written, or its store was lost: a
   * `train --resume` on a run whose JetStream directory is gone). Creates nothing.
   */
  static async existing(nc: NatsConnection, runId: string, log: Logger, timeoutMs = 5000): Promise<RunLog | undefined> {
    return RunLog.reach(nc, runId, log, timeoutMs, false);
  }

  private static async reach(
    nc: NatsConnection,
    runId: string,
    log: Logger,
    timeoutMs: number,
    create: boolean,
  ): Promise<RunLog | undefined> {
    const until = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < until) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2000 });
        const name = runLogStream(runId);
        const info = await jsm.streams.info(name).catch((err: unknown) => {
          if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return null;
          throw err;
        });
        if (!info && !create) return undefined;
        if (!info)
          await jsm.streams.add({
            name,
            subjects: [runLogSubject(runId)],
            storage: StorageType.File,
            num_replicas: 1,
            duplicate_window: 120_000_000_000,
          });
        return new RunLog(jsm, jetstream(nc, { timeout: 2000 }), runId, log, timeoutMs);
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new RunLogUnavailable(
      `the run log (JetStream stream ${runLogStream(runId)}) is not reachable within ${timeoutMs} ms: ${(last as Error)?.message ?? 'no answer'}`,
      { cause: last },
    );
  }

  /**
   * The last record of a log that is whole, or undefined for a log with none. Throws RunLogConflict, saying
   * what is wrong, when records are missing (sequence numbers with no record: a hole, or a log that does not
   * start at step 0) or the last record does not parse as that step's: such a log cannot be resumed.
   */
  async verified(): Promise<RunLogRecord | undefined> {
    const { state } = await this.jsm.streams.info(runLogStream(this.runId));
    if (state.messages === 0) {
      if (state.last_seq > 0)
        throw new RunLogConflict(`run log: its ${state.last_seq} records were removed (no record left to resume from)`);
      return undefined;
    }
    if (state.first_seq !== 1 || state.messages !== state.last_seq)
      throw new RunLogConflict(
        `run log: ${state.messages} records for sequences ${state.first_seq}..${state.last_seq}: ${state.last_seq - state.messages} missing (steps cannot be skipped)`,
      );
    return this.last();
  }

  /** The last committed step's record, or undefined for a run with none. */
  async last(): Promise<RunLogRecord | undefined> {
    const m = await this.jsm.streams.getMessage(runLogStream(this.runId), { last_by_subj: runLogSubject(this.runId) });
    return m ? this.parse(m.data, m.seq) : undefined;
  }

  /** Every record, in step order. */
  async all(): Promise<RunLogRecord[]> {
    const info = await this.jsm.streams.info(runLogStream(this.runId));
    const out: RunLogRecord[] = [];
    for (let seq = 1; seq <= info.state.last_seq; seq++) {
      const m = await this.jsm.streams.getMessage(runLogStream(this.runId), { seq });
      if (m) out.push(this.parse(m.data, seq));
    }
    return out;
  }

  /** The record of one step, if logged. */
  async get(step: number): Promise<RunLogRecord | undefined> {
    const m = await this.jsm.streams.getMessage(runLogStream(this.runId), { seq: step + 1 });
    return m ? this.parse(m.data, m.seq) : undefined;
  }

  /**
   * Append step s's record; refused (RunLogConflict) unless exactly steps 0..s-1 are logged, or
   * step s is logged with the same parameter hash (a replay after a checkpoint restore must
   * reproduce the bits it committed before). Retries a lost answer.
   */
  async append(rec: RunLogRecord): Promise<void> {
    const until = Date.now() + this.timeoutMs;
    let last: unknown;
    while (Date.now() < until) {
      try {
        const ack = await this.js.publish(runLogSubject(this.runId), JSON.stringify(rec), {
          expect: { lastSequence: rec.step },
          msgID: `${this.runId}/step/${rec.step}`,
        });
        if (ack.seq !== rec.step + 1)
          throw new RunLogConflict(`run log: step ${rec.step} stored at sequence ${ack.seq}, expected ${rec.step + 1}`);
        if (ack.duplicate) {
          // the server matched the message id of an earlier append of this step: it holds that one, which must be this record
          const logged = await this.get(rec.step);
          if (logged?.paramsHash !== rec.paramsHash)
            throw new RunLogConflict(
              `run log: step ${rec.step} was committed with paramsHash ${logged?.paramsHash.slice(0, 12)}, now ${rec.paramsHash.slice(0, 12)}`,
            );
        }
        return;
      } catch (err) {
        const msg = (err as Error).message ?? '';
        if (err instanceof RunLogConflict) throw err;
        if (isWrongLastSequence(err)) {
          const logged = await this.get(rec.step).catch(() => undefined);
          if (logged && logged.paramsHash === rec.paramsHash) return; // a replay that reproduced the step bit for bit
          if (logged)
            throw new RunLogConflict(
              `run log: step ${rec.step} was committed with paramsHash ${logged.paramsHash.slice(0, 12)}, now ${rec.paramsHash.slice(0, 12)}`,
              { cause: err },
            );
          throw new RunLogConflict(`run log refused step ${rec.step}: ${msg} (an earlier step is missing)`, { cause: err });
        }
        last = err;
        this.log.warn({ err: msg, step: rec.step }, 'run log append failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new RunLogUnavailable(
      `run log: step ${rec.step} not stored within ${this.timeoutMs} ms: ${(last as Error)?.message ?? 'no answer'}`,
      { cause: last },
    );
  }

  private parse(data: Uint8Array, seq: number): RunLogRecord {
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder().decode(data));
    } catch {
      throw new RunLogConflict(`run log record ${seq} is not JSON`);
    }
    const r = RunLogRecord.safeParse(value);
    if (!r.success) throw new RunLogConflict(`run log record ${seq}: ${describeIssues(r.error).join('; ')}`);
    if (r.data.step !== seq - 1) throw new RunLogConflict(`run log record ${seq} is for step ${r.data.step}, expected ${seq - 1}`);
    return r.data;
  }
}

/** The stream refused a publish because its last sequence is not the one expected (JetStream API error 10071): checked by code, not by message. */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
}

/**
 * The client machine's `runlog` actor over a RunLog: each log.append stamped with the wall-clock time and answered
 * with log.appended or log.failed; each log.read answered with log.record (or log.failed, unavailable).
 */
export function runLogActor(runLog: RunLog, clock: RunClock) {
  return fromCallback<RunLogCommand>(({ sendBack, receive }) => {
    receive((cmd) => {
      if (cmd.type === 'log.read') {
        runLog.get(cmd.step).then(
          (record) => sendBack({ type: 'log.record', step: cmd.step, record } satisfies RunLogEvent),
          (err: Error) =>
            sendBack({
              type: 'log.failed',
              step: cmd.step,
              problem: 'unavailable',
              detail: err.message.slice(0, 1000),
            } satisfies RunLogEvent),
        );
        return;
      }
      const step = cmd.record.step;
      runLog.append({ ...cmd.record, at: new Date(clock.now()).toISOString() }).then(
        () => sendBack({ type: 'log.appended', step } satisfies RunLogEvent),
        (err: Error) =>
          sendBack({
            type: 'log.failed',
            step,
            problem: err instanceof RunLogConflict ? 'conflict' : 'unavailable',
            detail: err.message.slice(0, 1000),
          } satisfies RunLogEvent),
      );
    });
  });
}
