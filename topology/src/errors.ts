/** Raised when a topology, scenario or flag does not satisfy its schema. The message names each field and why. */
export class InvalidTopology extends Error {
  override name = 'InvalidTopology';
  constructor(
    readonly source: string,
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid topology (${source}):\n  ${problems.join('\n  ')}`, options);
  }
}

/** Raised when any other outside input (a file, a flag) does not satisfy its schema. */
export class InvalidInput extends Error {
  override name = 'InvalidInput';
  constructor(
    readonly source: string,
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid ${source}:\n  ${problems.join('\n  ')}`, options);
  }
}
