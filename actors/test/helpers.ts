import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromCallback } from 'xstate';
import { pino } from 'pino';
import type { RunLogRecord } from '@lockstep/topology';
import type { CheckpointCommand, CheckpointEvent, RunLogCommand, RunLogEvent, WireCommand } from '../src/index.ts';

export const quietLog = pino({ level: 'silent' });

/** A wire for machine tests without a network: records what the machine sends and hands it to `route`. */
export function recordingWire(sent: WireCommand[], route?: (cmd: WireCommand) => void) {
  return fromCallback<WireCommand>(({ receive }) => {
    receive((cmd) => {
      sent.push(cmd);
      route?.(cmd);
    });
  });
}

/**
 * A run log for machine tests without a server: it keeps records in memory and,
 * like the JetStream log, refuses a step unless exactly the steps before it are logged.
 */
export function memoryRunLog(records: RunLogRecord[]) {
  return fromCallback<RunLogCommand>(({ receive, sendBack }) => {
    receive((cmd) => {
      const step = cmd.record.step;
      if (step < records.length && records[step].paramsHash === cmd.record.paramsHash)
        sendBack({ type: 'log.appended', step } satisfies RunLogEvent);
      else if (step !== records.length)
        sendBack({
          type: 'log.failed',
          step,
          reason: `RunLogConflict: step ${step} after ${records.length} records`,
          retry: false,
        } satisfies RunLogEvent);
      else {
        records.push(cmd.record);
        sendBack({ type: 'log.appended', step } satisfies RunLogEvent);
      }
    });
  });
}

/** A checkpoint store with nothing in it: a restore goes back to the initial state. */
export function noCheckpoints() {
  return fromCallback<CheckpointCommand>(({ receive, sendBack }) => {
    receive(() => sendBack({ type: 'ckpt.none', skipped: [] } satisfies CheckpointEvent));
  });
}

export function controlSent(sent: WireCommand[], kind: string) {
  return sent.flatMap((c) => (c.type === 'wire.send' && c.message.kind === kind ? [c.message] : []));
}

/** A real nats-server on a free port, the way nats.js's own tests start one. */
export async function startNatsServer(
  args: string[] = [],
): Promise<{ url: string; port: number; proc: ChildProcess; stop: () => Promise<void> }> {
  const bin =
    ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'].find((p) => {
      try {
        readFileSync(p, { flag: 'r' }).length;
        return true;
      } catch {
        return false;
      }
    }) ?? 'nats-server';
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-nats-'));
  const proc = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir, ...args], { stdio: 'ignore' });
  const until = Date.now() + 10_000;
  let port = 0;
  while (!port) {
    if (Date.now() > until) throw new Error('nats-server did not start within 10 s');
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}`);
    const f = readdirSync(dir).find((n) => n.endsWith('.ports'));
    if (f) {
      try {
        const ports = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nats: string[] };
        port = Number(new URL(ports.nats[0]).port);
      } catch {
        // file still being written
      }
    }
    if (!port) await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
