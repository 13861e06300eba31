// A private OpenLDAP server for tests: Debian's slapd with its own slapd.conf and mdb database in a
// temp dir, on a free loopback port (and an ldaps:// port plus STARTTLS with `tls`), in the
// foreground. Entries go in with ldapadd/ldapmodify as the database's root DN. down() and restart()
// keep the port and the data, for "directory gone, then back" tests.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestkitError, tail } from './errors.js';
import { freePort } from './free-port.js';
import { type ManagedProcess, makeTempDir, runCommand, startProcess, waitForPort } from './process.js';
import { selfSignedCert } from './self-signed-cert.js';

const HOST = '127.0.0.1';

export interface SlapdOptions {
  /** Default `dc=example,dc=com`; the suffix entry and `ou=people` under it are created. */
  suffix?: string;
  /** Also STARTTLS on the ldap:// port and an ldaps:// port, with a certificate for 127.0.0.1. */
  tls?: boolean;
  /** Entries readable without a bind (default true); false: only bound users read. */
  anonymousRead?: boolean;
}

export interface SlapdServer {
  readonly host: string;
  readonly port: number;
  /** ldap://127.0.0.1:<port> */
  readonly url: string;
  /** ldaps://127.0.0.1:<tlsPort>, with `tls`. */
  readonly ldapsUrl: string | undefined;
  /** PEM of the (self-signed) server certificate, to trust as the CA; with `tls`. */
  readonly ca: string | undefined;
  /** The same PEM as a file. */
  readonly caFile: string | undefined;
  readonly suffix: string;
  /** `ou=people,<suffix>`, created at start. */
  readonly people: string;
  readonly rootDn: string;
  readonly rootPassword: string;
  /** ldapadd of LDIF text as the root DN. */
  add(ldif: string): Promise<void>;
  /** ldapmodify of LDIF text (changetype records) as the root DN. */
  modify(ldif: string): Promise<void>;
  /** slapd's stats log (connections, binds, searches) so far. */
  log(): string;
  /** Stops slapd, keeping port and data; restart() brings it back. */
  down(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const SCHEMAS = ['core', 'cosine', 'inetorgperson', 'nis'];

export async function startSlapd(options: SlapdOptions = {}): Promise<SlapdServer> {
  const suffix = options.suffix ?? 'dc=example,dc=com';
  const rootDn = `cn=admin,${suffix}`;
  const rootPassword = 'testkit-secret';
  const dir = await makeTempDir('slapd');
  const port = await freePort(HOST);
  const tlsPort = options.tls ? await freePort(HOST) : undefined;
  let caFile: string | undefined;
  let ca: string | undefined;
  const tlsLines: string[] = [];
  if (options.tls) {
    const pair = await selfSignedCert();
    ca = pair.cert;
    caFile = join(dir.path, 'cert.pem');
    const keyFile = join(dir.path, 'key.pem');
    await writeFile(caFile, pair.cert);
    await writeFile(keyFile, pair.key, { mode: 0o600 });
    tlsLines.push(`TLSCertificateFile ${caFile}`, `TLSCertificateKeyFile ${keyFile}`);
  }
  const anonymous = options.anonymousRead ?? true;
  const conf = [
    ...SCHEMAS.map((s) => `include /etc/ldap/schema/${s}.schema`),
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    `pidfile ${join(dir.path, 'slapd.pid')}`,
    `argsfile ${join(dir.path, 'slapd.args')}`,
    ...tlsLines,
    'database mdb',
    'maxsize 33554432',
    `suffix "${suffix}"`,
    `rootdn "${rootDn}"`,
    `rootpw ${rootPassword}`,
    `directory ${join(dir.path, 'db')}`,
    // Lookups by mail or uid, as recipient maps do, without a scan of the whole database.
    'index objectClass,mail,uid eq',
    'access to attrs=userPassword by self write by anonymous auth by * none',
    anonymous ? 'access to * by * read' : 'access to * by users read by anonymous auth',
    '',
  ].join('\n');
  await mkdir(join(dir.path, 'db'));
  const confFile = join(dir.path, 'slapd.conf');
  await writeFile(confFile, conf);
  const urls = [`ldap://${HOST}:${port}/`, ...(tlsPort ? [`ldaps://${HOST}:${tlsPort}/`] : [])];

  const spawn = async (): Promise<ManagedProcess> => {
    // -d 256 (stats): foreground, and a log line per connection and operation.
    const p = startProcess('slapd', 'slapd', ['-d', '256', '-f', confFile, '-h', urls.join(' ')]);
    try {
      await waitForPort(port, { host: HOST, process: p, timeoutMs: 15_000 });
      if (tlsPort) await waitForPort(tlsPort, { host: HOST, process: p, timeoutMs: 15_000 });
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  };

  const ldap = async (command: 'ldapadd' | 'ldapmodify', ldif: string): Promise<void> => {
    const r = await runCommand(
      command,
      ['-x', '-H', `ldap://${HOST}:${port}`, '-D', rootDn, '-w', rootPassword],
      { input: ldif, timeoutMs: 15_000 },
    );
    if (r.code !== 0) {
      throw new TestkitError(
        'TESTKIT_COMMAND',
        `${command} failed (${r.code}):\n${tail(r.stdout + r.stderr)}`,
      );
    }
  };

  let server: ManagedProcess;
  let logBefore = '';
  try {
    server = await spawn();
    const rdn = /^dc=([^,]+)/.exec(suffix)?.[1] ?? 'example';
    await ldap(
      'ldapadd',
      `dn: ${suffix}\nobjectClass: dcObject\nobjectClass: organization\no: ${rdn}\ndc: ${rdn}\n\n` +
        `dn: ou=people,${suffix}\nobjectClass: organizationalUnit\nou: people\n`,
    );
  } catch (err) {
    await dir.remove();
    throw err;
  }

  return {
    host: HOST,
    port,
    url: `ldap://${HOST}:${port}`,
    ldapsUrl: tlsPort ? `ldaps://${HOST}:${tlsPort}` : undefined,
    ca,
    caFile,
    suffix,
    people: `ou=people,${suffix}`,
    rootDn,
    rootPassword,
    add: (ldif) => ldap('ldapadd', ldif),
    modify: (ldif) => ldap('ldapmodify', ldif),
    log: () => logBefore + server.output(),
    async down() {
      logBefore += server.output();
      await server.stop();
    },
    async restart() {
      if (!server.exitStatus()) {
        logBefore += server.output();
        await server.stop();
      }
      server = await spawn();
    },
    async stop() {
      await server.stop();
      await dir.remove();
    },
  };
}
