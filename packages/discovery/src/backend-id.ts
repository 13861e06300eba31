// Backend ids are `host:port` and must stay stable across updates; IPv6 hosts are bracketed so the id
// still splits unambiguously.

export function backendId(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
