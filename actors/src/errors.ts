/** One error class per failure a user can meet; each message says which step, which actor and what to do. */

/** The NATS connection could not be made or was lost for good. */
export class NatsUnavailable extends Error {
  override name = 'NatsUnavailable';
}

/** The run log refused a record: the step is already committed, or one before it is missing. Never retried. */
export class RunLogConflict extends Error {
  override name = 'RunLogConflict';
}

/** The run log's server did not answer in time. */
export class RunLogUnavailable extends Error {
  override name = 'RunLogUnavailable';
}
