import type { ErrorCode } from '../shared/protocol.ts';

/** An error a client caused or can act on; its code and message are sent back as they are. */
export class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** A call made on something already closed, or in the wrong order. */
export class InvalidStateError extends RequestError {
  constructor(message: string) {
    super('INVALID_STATE', message);
    this.name = 'InvalidStateError';
  }
}
