// The errors a client can cause or act on. A RequestError's code and message go back as they are (REST with the
// code's HTTP status, Socket.IO in the ack); anything else is an internal error, logged and answered generically.
import type { ErrorBody, ErrorCode } from './shared/errors.ts';

export class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** RATE_LIMITED: whole seconds until a retry can succeed (REST's Retry-After, the ack's retryAfterSeconds). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'RequestError';
  }

  get body(): ErrorBody {
    return { code: this.code, message: this.message, ...(this.retryAfterSeconds ? { retryAfterSeconds: this.retryAfterSeconds } : {}) };
  }
}

/** Cluster mode: the stage's media lives on another node, which the client should reach instead (docs/cluster.md). */
export class WrongNodeError extends RequestError {
  constructor(
    readonly ownerUrl: string,
    readonly ownerNode: string,
  ) {
    super('WRONG_NODE', `this stage is served by node ${ownerNode}: connect to ${ownerUrl}`);
    this.name = 'WrongNodeError';
  }

  override get body(): ErrorBody {
    return { ...super.body, ownerUrl: this.ownerUrl };
  }
}

/** A call made on something already closed, or in the wrong order. */
export class InvalidStateError extends RequestError {
  constructor(message: string) {
    super('INVALID_STATE', message);
    this.name = 'InvalidStateError';
  }
}
