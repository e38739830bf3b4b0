import { RunFailed } from '../errors.ts';

/**
 * What `--json` prints for a command that ended with `e` (and what a failed run's summary.json holds): the error's
 * name and message, the typed failure when the client ended the run, and the partial result when there is one.
 */
export function errorJson(e: Error): { error: Record<string, unknown>; partial?: unknown } {
  return {
    error: {
      name: e.name,
      message: e.message,
      ...(e instanceof RunFailed && e.failure ? { kind: e.failure.kind, failure: e.failure } : {}),
    },
    ...(e instanceof RunFailed && e.summary ? { partial: e.summary } : {}),
  };
}
