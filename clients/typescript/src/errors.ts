/** The errors the SDK throws (the Python SDK's, by the same names). */
import type { JobEvent, ErrorMessage } from "./types.js";

/** Base of every error the SDK throws. */
export class EmpqError extends Error {
  override name = "EmpqError";
}

/** The hub could not be reached (refused, DNS, TLS, HTTP refusal of the WebSocket handshake). */
export class HubUnreachable extends EmpqError {
  override name = "HubUnreachable";
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(`cannot reach the hub at ${url}: ${reason}`);
  }
}

/** The connection dropped while a request was in flight (or the client is not connected). */
export class ConnectionLost extends EmpqError {
  override name = "ConnectionLost";
}

/** No reply to a request (or no end to a wait) within its timeout. */
export class RequestTimeout extends EmpqError {
  override name = "RequestTimeout";
}

/** The hub answered a request with `error`: `code` (spec D5), `details`, the `frame` itself. */
export class HubError extends EmpqError {
  override name = "HubError";
  readonly code: ErrorMessage["error_code"];
  readonly details: NonNullable<ErrorMessage["details"]>;
  constructor(readonly frame: ErrorMessage) {
    super(`${frame.error_code}: ${frame.error}`);
    this.code = frame.error_code;
    this.details = frame.details ?? {};
  }

  static of(frame: ErrorMessage): HubError {
    return frame.error_code === "AUTH_FAILED" ? new AuthFailed(frame) : new HubError(frame);
  }
}

/** The hub refused the token (AUTH_FAILED, spec D4); it closes the connection. */
export class AuthFailed extends HubError {
  override name = "AuthFailed";
}

/** The job ended in state `failed` (retries exhausted) or `timeout` (over its run limit). */
export class JobFailed extends EmpqError {
  override name = "JobFailed";
  constructor(
    readonly jobId: string,
    readonly status: string,
    readonly error: string | undefined,
    readonly event?: JobEvent,
  ) {
    super(`job ${jobId} ${status}: ${error || "no error text"}`);
  }
}

/** The job was cancelled. */
export class JobCancelledError extends EmpqError {
  override name = "JobCancelledError";
  constructor(
    readonly jobId: string,
    readonly reason?: string,
    readonly event?: JobEvent,
  ) {
    super(`job ${jobId} cancelled${reason ? `: ${reason}` : ""}`);
  }
}
