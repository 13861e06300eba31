// Errors of this package carry a stable `code`, so the proxy can count and log them without parsing
// messages.

export type DiscoveryErrorCode =
  | 'DISCOVERY_CONSUL_UNREACHABLE'
  | 'DISCOVERY_CONSUL_TIMEOUT'
  | 'DISCOVERY_CONSUL_HTTP'
  | 'DISCOVERY_CONSUL_BAD_ANSWER'
  | 'DISCOVERY_CA_UNREADABLE'
  | 'DISCOVERY_NO_CONSUL'
  | 'DISCOVERY_NO_SOURCE';

export class DiscoveryError extends Error {
  readonly code: DiscoveryErrorCode;
  /** HTTP status when Consul answered with an error. */
  readonly status?: number;

  constructor(code: DiscoveryErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, { cause: options?.cause });
    this.name = 'DiscoveryError';
    this.code = code;
    if (options?.status !== undefined) this.status = options.status;
  }
}
