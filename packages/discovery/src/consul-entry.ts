// Turns Consul health entries (/v1/health/service) into backends by the Consul conventions of
// DESIGN.md: weight from Weights.Passing, cap and per-backend options from `smtp-lb-*` service meta.
import type { ProxyProtocolVersion, TlsMode, XclientMode } from '@smtp-lb/config';
import { backendId } from './backend-id.js';
import type { DiscoveredBackend } from './types.js';

export interface ConsulHealthEntry {
  Node?: { Node?: string; Address?: string };
  Service?: {
    ID?: string;
    Service?: string;
    Address?: string;
    Port?: number;
    Meta?: Record<string, string> | null;
    Weights?: { Passing?: number; Warning?: number } | null;
  };
}

/** A meta value that was ignored; the caller logs it (once per distinct value). */
export interface MetaProblem {
  serviceId: string;
  key: string;
  value: string;
  reason: string;
}

const XCLIENT: readonly XclientMode[] = ['auto', 'off'];
const PROXY_PROTOCOL: readonly ProxyProtocolVersion[] = ['off', 'v1', 'v2'];
const TLS: readonly TlsMode[] = ['none', 'opportunistic', 'required'];

export function toBackends(
  entries: readonly ConsulHealthEntry[],
  defaultMaxConnections: number,
  problems: MetaProblem[],
): DiscoveredBackend[] {
  const byId = new Map<string, DiscoveredBackend>();
  for (const entry of entries) {
    const service = entry.Service;
    const serviceId = service?.ID ?? '?';
    const host = service?.Address || entry.Node?.Address || '';
    const port = service?.Port ?? 0;
    if (host === '' || !Number.isInteger(port) || port <= 0 || port > 65535) {
      problems.push({
        serviceId,
        key: 'Address/Port',
        value: `${host}:${port}`,
        reason: 'no usable address',
      });
      continue;
    }
    const meta = service?.Meta ?? {};
    const backend: DiscoveredBackend = {
      id: backendId(host, port),
      host,
      port,
      // Consul requires Passing >= 1 when weights are set and fills in 1 when they are not.
      weight: positiveInt(service?.Weights?.Passing) ?? 1,
      maxConnections: defaultMaxConnections,
    };
    const cap = meta['smtp-lb-max-connections'];
    if (cap !== undefined) {
      const n = /^\d+$/.test(cap.trim()) ? positiveInt(Number(cap)) : undefined;
      if (n === undefined)
        problems.push({
          serviceId,
          key: 'smtp-lb-max-connections',
          value: cap,
          reason: 'not a positive integer',
        });
      else backend.maxConnections = n;
    }
    const xclient = pick(meta, 'smtp-lb-xclient', XCLIENT, serviceId, problems);
    if (xclient !== undefined) backend.xclient = xclient;
    const proxyProtocol = pick(meta, 'smtp-lb-proxy-protocol', PROXY_PROTOCOL, serviceId, problems);
    if (proxyProtocol !== undefined) backend.proxyProtocol = proxyProtocol;
    const tls = pick(meta, 'smtp-lb-tls', TLS, serviceId, problems);
    if (tls !== undefined) backend.tls = tls;
    // Two registrations of one host:port are one backend to us; the first keeps it.
    if (byId.has(backend.id)) {
      problems.push({
        serviceId,
        key: 'Address/Port',
        value: backend.id,
        reason: 'duplicate of another instance',
      });
      continue;
    }
    byId.set(backend.id, backend);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Same backends with the same attributes; both sides sorted by id as toBackends returns them. */
export function sameBackends(a: readonly DiscoveredBackend[], b: readonly DiscoveredBackend[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i];
    return (
      y !== undefined &&
      x.id === y.id &&
      x.weight === y.weight &&
      x.maxConnections === y.maxConnections &&
      x.xclient === y.xclient &&
      x.proxyProtocol === y.proxyProtocol &&
      x.tls === y.tls
    );
  });
}

function positiveInt(n: unknown): number | undefined {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function pick<T extends string>(
  meta: Record<string, string>,
  key: string,
  allowed: readonly T[],
  serviceId: string,
  problems: MetaProblem[],
): T | undefined {
  const value = meta[key];
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  problems.push({ serviceId, key, value, reason: `not one of ${allowed.join(', ')}` });
  return undefined;
}
