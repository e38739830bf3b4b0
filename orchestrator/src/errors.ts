import type { FailureKind, FailureReport } from '@lockstep/topology';

/** Errors the orchestrator can end with; each says what to do. */

export class NatsServerMissing extends Error {
  override name = 'NatsServerMissing';
  constructor(explicit?: string) {
    super(
      (explicit
        ? `nats-server was not found at ${explicit} (--nats-server): no executable file there.\n`
        : 'nats-server was not found on PATH (nor in /usr/sbin or /usr/local/bin).\n') +
        '  Debian/Ubuntu: sudo apt-get install -y nats-server   (npm test and npm run demo do this when run as root)\n' +
        '  elsewhere: install the nats-server binary (2.9 or newer) and put it on PATH, or pass --nats-server <path>.',
    );
  }
}

/** A process the launcher started exited before the run ended. */
export class ProcessExited extends Error {
  override name = 'ProcessExited';
}

/**
 * The run ended without training every step; the message says why. When the
 * client ended it, `failure` is its typed failure (`failure.kind` says which),
 * as the summary carries it.
 */
export class RunFailed extends Error {
  override name = 'RunFailed';
  constructor(
    message: string,
    readonly summary?: unknown,
    readonly failure?: FailureReport,
  ) {
    super(message);
  }

  /** The failure's kind, when the client ended the run. */
  get kind(): FailureKind | undefined {
    return this.failure?.kind;
  }
}

/** Bad command-line flags or input files. */
export class UsageError extends Error {
  override name = 'UsageError';
}
