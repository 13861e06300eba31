// A PROXY v2 header (HAProxy's proxy-protocol.txt 2.2) for tests that stand in for a trusted L4
// interceptor: PROXY command, TCP over IPv4, the given source and destination.
const SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');

export function proxyV2(
  src: { address: string; port: number },
  dst: { address: string; port: number },
): Buffer {
  const body = Buffer.alloc(12);
  Buffer.from(src.address.split('.').map(Number)).copy(body, 0);
  Buffer.from(dst.address.split('.').map(Number)).copy(body, 4);
  body.writeUInt16BE(src.port, 8);
  body.writeUInt16BE(dst.port, 10);
  const head = Buffer.from([0x21, 0x11, 0, 12]);
  return Buffer.concat([SIGNATURE, head, body]);
}
