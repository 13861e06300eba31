// The Helm chart and deploy/ as an operator meets them: the real Helm (scripts/build-helm.sh) lints and
// renders the chart with the default values and each ci/ file, the rendered config passes the real
// `smtp-lb check-config` with the pod's environment, and promtool checks the alert rules.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${VAR}` is the config syntax the chart checks
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../../..');
const CHART = join(ROOT, 'helm/smtp-lb');
const CLI = join(ROOT, 'packages/proxy/dist/src/cli.js');
const DEPLOY = join(ROOT, 'deploy');
const T = { timeout: 30_000 };

const work = mkdtempSync(join(tmpdir(), 'smtp-lb-helm-'));
after(() => rmSync(work, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are checked field by field
type Obj = Record<string, any>;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 25_000, env: env ?? process.env, cwd: ROOT });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let helm = '';
function helmTemplate(...args: string[]): Run {
  return run(helm, ['template', 'mx', CHART, '--namespace', 'mail', ...args]);
}

function render(...args: string[]): Obj[] {
  const r = helmTemplate(...args);
  assert.equal(r.status, 0, `helm template ${args.join(' ')} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

function one(objs: Obj[], kind: string, name = 'mx-smtp-lb'): Obj {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name === name);
  assert.equal(found.length, 1, `expected one ${kind} ${name}, found ${found.length}`);
  return found[0]!;
}

function valuesFile(name: string, text: string): string {
  const p = join(work, name);
  writeFileSync(p, text);
  return p;
}

/** Milliseconds of a config duration (`30s`, `1m30s`, `500ms`, digits = ms). */
function durationMs(value: string | number): number {
  if (typeof value === 'number' || /^\d+$/.test(value)) return Number(value);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const [, n, u] of value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(n) * unit[u!]!;
  return ms;
}

/** The environment the pod would have: literal values, $(VAR) references, downward API, Secrets. */
function podEnv(container: Obj): Record<string, string> {
  const env: Record<string, string> = { HOSTNAME: 'mx-smtp-lb-7d9c5-abcde' };
  const fields: Record<string, string> = {
    'metadata.name': 'mx-smtp-lb-7d9c5-abcde',
    'metadata.namespace': 'mail',
    'status.podIP': '10.244.1.7',
    'status.hostIP': '10.0.3.21',
  };
  for (const e of container.env ?? []) {
    if (e.value !== undefined)
      env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, v: string) => env[v] ?? '');
    else if (e.valueFrom?.fieldRef) env[e.name] = fields[e.valueFrom.fieldRef.fieldPath]!;
    else if (e.valueFrom?.secretKeyRef)
      env[e.name] = e.name.includes('REDIS') ? 'redis://:pw@redis:6379/0' : 'secret';
  }
  return env;
}

function checkConfig(file: string, env: Record<string, string>): Run {
  return run(process.execPath, [CLI, 'check-config', file], { PATH: process.env.PATH, ...env });
}

/** One values example per cloud load balancer (the chart README's table). */
const CLOUD_LBS = ['aws-nlb-values.yaml', 'gke-values.yaml', 'aks-values.yaml', 'digitalocean-values.yaml'];

const VARIANTS: Array<[string, string[]]> = [
  ['default values', []],
  ['ci/tls-values.yaml', ['-f', join(CHART, 'ci/tls-values.yaml')]],
  ['ci/consul-redis-values.yaml', ['-f', join(CHART, 'ci/consul-redis-values.yaml')]],
  ['ci/proxy-protocol-values.yaml', ['-f', join(CHART, 'ci/proxy-protocol-values.yaml')]],
  ['ci/submission-values.yaml', ['-f', join(CHART, 'ci/submission-values.yaml')]],
  ['ci/outbound-values.yaml', ['-f', join(CHART, 'ci/outbound-values.yaml')]],
  ...CLOUD_LBS.map((f): [string, string[]] => [`ci/${f}`, ['-f', join(CHART, 'ci', f)]]),
];

before(() => {
  const r = run('bash', [join(ROOT, 'scripts/build-helm.sh'), '--check']);
  assert.equal(r.status, 0, r.stderr);
  helm = r.stdout.trim();
});

describe('helm chart', () => {
  test('helm lint --strict passes with the default values and every ci/ file', T, () => {
    for (const [name, args] of VARIANTS) {
      const r = run(helm, ['lint', '--strict', CHART, ...args]);
      assert.equal(r.status, 0, `${name}:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  test('the generated files are up to date (values.schema.json, README table, alert rules copy)', T, () => {
    const r = run(process.execPath, [join(ROOT, 'scripts/gen-chart.mjs'), '--check']);
    assert.equal(r.status, 0, r.stderr);
  });

  for (const [name, args] of VARIANTS) {
    describe(name, () => {
      let objs: Obj[] = [];
      let deployment: Obj = {};
      let pod: Obj = {};
      let container: Obj = {};
      let config: Obj = {};
      before(() => {
        objs = render(...args);
        deployment = one(objs, 'Deployment');
        pod = deployment.spec.template.spec;
        container = pod.containers.find((c: Obj) => c.name === 'smtp-lb');
        config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
      });

      test('the rendered smtp-lb.yaml passes smtp-lb check-config with the pod environment', T, () => {
        const file = join(work, `${name.replaceAll('/', '-')}.smtp-lb.yaml`);
        writeFileSync(file, one(objs, 'ConfigMap').data['smtp-lb.yaml']);
        const r = checkConfig(file, podEnv(container));
        assert.equal(r.status, 0, `check-config failed:\n${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /: OK \(/);
        assert.deepEqual(container.args, ['--config', '/etc/smtp-lb/smtp-lb.yaml']);
        const mount = container.volumeMounts.find((m: Obj) => m.mountPath === '/etc/smtp-lb');
        const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
        const cm = volume.projected.sources.find((s: Obj) => s.configMap);
        assert.equal(cm.configMap.name, one(objs, 'ConfigMap').metadata.name);
        assert.deepEqual(cm.configMap.items, [{ key: 'smtp-lb.yaml', path: 'smtp-lb.yaml' }]);
      });

      test('probes hit /healthz and /readyz on the admin port of config.admin.listen', T, () => {
        const adminPort = Number(String(config.admin.listen).split(':').pop());
        const ports = Object.fromEntries(container.ports.map((p: Obj) => [p.name, p.containerPort]));
        assert.equal(ports.admin, adminPort);
        assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
        assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
        assert.deepEqual(container.startupProbe.httpGet, { path: '/healthz', port: 'admin' });
        const admin = one(objs, 'Service', 'mx-smtp-lb-admin');
        assert.equal(admin.spec.type, 'ClusterIP');
        assert.equal(admin.spec.ports[0].targetPort, 'admin');
      });

      test('the LoadBalancer Service maps public ports to unprivileged listener ports', T, () => {
        const svc = one(objs, 'Service');
        assert.equal(svc.spec.type, 'LoadBalancer');
        assert.equal(svc.spec.externalTrafficPolicy, 'Local');
        assert.ok(!svc.spec.ports.some((p: Obj) => p.name === 'admin'), 'admin port is not public');
        // Every public port reaches a listener; port 25 (when served) is listener port 2525.
        for (const port of svc.spec.ports as Obj[]) {
          const target = container.ports.find((p: Obj) => p.name === port.targetPort);
          const listener = config.listeners.find(
            (l: Obj) => Number(l.listen.split(':').pop()) === target.containerPort,
          );
          assert.ok(listener, `no listener listens on container port ${target.containerPort}`);
          if (port.name === 'smtp') {
            assert.equal(port.port, 25);
            assert.equal(target.containerPort, 2525);
          }
        }
        assert.ok(
          name === 'ci/submission-values.yaml' || svc.spec.ports.some((p: Obj) => p.name === 'smtp'),
          'port 25 is served',
        );
        for (const p of container.ports) assert.ok(p.containerPort >= 1024, `${p.name} is privileged`);
      });

      test('the grace period is longer than preStop sleep + config.drainTimeout', T, () => {
        const drainS = durationMs(config.drainTimeout ?? '30s') / 1000;
        const sleep = container.lifecycle.preStop.exec.command;
        assert.equal(sleep[0], 'sleep');
        const sleepS = Number(sleep[1]);
        assert.ok(sleepS > 0);
        assert.ok(
          pod.terminationGracePeriodSeconds > drainS + sleepS,
          `grace ${pod.terminationGracePeriodSeconds}s vs drain ${drainS}s + preStop ${sleepS}s`,
        );
      });

      test('every object carries the app.kubernetes.io labels and selectors match the pods', T, () => {
        const podLabels = deployment.spec.template.metadata.labels;
        for (const o of objs) {
          const l = o.metadata.labels ?? {};
          for (const key of ['name', 'instance', 'version', 'managed-by', 'part-of', 'component']) {
            assert.ok(
              l[`app.kubernetes.io/${key}`],
              `${o.kind} ${o.metadata.name} lacks app.kubernetes.io/${key}`,
            );
          }
          assert.equal(l['app.kubernetes.io/instance'], 'mx');
          assert.equal(l['app.kubernetes.io/managed-by'], 'Helm');
        }
        const selects = (sel: Obj) => Object.entries(sel).every(([k, v]) => podLabels[k] === v);
        assert.ok(selects(deployment.spec.selector.matchLabels));
        assert.ok(selects(one(objs, 'Service').spec.selector));
        assert.ok(selects(one(objs, 'Service', 'mx-smtp-lb-admin').spec.selector));
        assert.ok(selects(one(objs, 'PodDisruptionBudget').spec.selector.matchLabels));
        for (const c of pod.topologySpreadConstraints) assert.ok(selects(c.labelSelector.matchLabels));
        assert.match(deployment.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
      });

      test('the pod runs as non-root with a read-only root filesystem and no capabilities', T, () => {
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.notEqual(pod.securityContext.runAsUser, 0);
        assert.equal(pod.automountServiceAccountToken, false);
        const sc = container.securityContext;
        assert.equal(sc.readOnlyRootFilesystem, true);
        assert.equal(sc.allowPrivilegeEscalation, false);
        assert.deepEqual(sc.capabilities.drop, ['ALL']);
        assert.equal(sc.capabilities.add, undefined);
      });
    });
  }

  test('TLS: the Secret is mounted where the listeners read the certificate and key', T, () => {
    const objs = render('-f', join(CHART, 'ci/tls-values.yaml'));
    const pod = one(objs, 'Deployment').spec.template.spec;
    const config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
    const mount = pod.containers[0].volumeMounts.find((m: Obj) => m.mountPath === '/etc/smtp-lb');
    const sources = pod.volumes.find((v: Obj) => v.name === mount.name).projected.sources;
    const secret = sources.find((s: Obj) => s.secret).secret;
    assert.equal(secret.name, 'mx-example-com-tls');
    const files = secret.items.map((i: Obj) => `${mount.mountPath}/${i.path}`);
    const tlsListeners = config.listeners.filter((l: Obj) => l.tls);
    assert.equal(tlsListeners.length, 2);
    for (const l of tlsListeners) {
      assert.ok(files.includes(l.tls.cert), `${l.name}: ${l.tls.cert} is not mounted`);
      assert.ok(files.includes(l.tls.key), `${l.name}: ${l.tls.key} is not mounted`);
    }
    const ports = one(objs, 'Service').spec.ports.map((p: Obj) => p.port);
    assert.deepEqual(ports, [25, 465]);
  });

  test(
    'submission: the htpasswd Secret is mounted where the listeners read it; 587 and 465 served',
    T,
    () => {
      const objs = render('-f', join(CHART, 'ci/submission-values.yaml'));
      const pod = one(objs, 'Deployment').spec.template.spec;
      const config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
      const mount = pod.containers[0].volumeMounts.find((m: Obj) => m.mountPath === '/etc/smtp-lb');
      const sources = pod.volumes.find((v: Obj) => v.name === mount.name).projected.sources;
      const users = sources.find((s: Obj) => s.secret?.name === 'smtp-users').secret;
      assert.deepEqual(users.items, [{ key: 'users', path: 'users' }]);
      for (const l of config.listeners) {
        assert.equal(l.role, 'submission');
        assert.equal(l.auth.file, `${mount.mountPath}/${users.items[0].path}`);
      }
      assert.deepEqual(
        one(objs, 'Service').spec.ports.map((p: Obj) => p.port),
        [587, 465],
      );
    },
  );

  test('Consul + Redis: agent on the host IP, Redis URL from a Secret, HPA and monitoring objects', T, () => {
    const objs = render('-f', join(CHART, 'ci/consul-redis-values.yaml'));
    const deployment = one(objs, 'Deployment');
    const env = Object.fromEntries(
      deployment.spec.template.spec.containers[0].env.map((e: Obj) => [e.name, e]),
    );
    assert.equal(env.HOST_IP.valueFrom.fieldRef.fieldPath, 'status.hostIP');
    assert.equal(env.CONSUL_HTTP_ADDR.value, 'http://$(HOST_IP):8500');
    assert.deepEqual(env.SMTP_LB_REDIS_URL.valueFrom.secretKeyRef, { name: 'smtp-lb-redis', key: 'url' });
    const config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
    assert.equal(config.ledger.redis, '${SMTP_LB_REDIS_URL}', 'the URL stays out of the ConfigMap');
    assert.equal(config.pools.default, undefined, 'pools.default: null drops the example pool');
    assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count');
    const hpa = one(objs, 'HorizontalPodAutoscaler');
    assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
    assert.equal(hpa.spec.minReplicas, 3);
    assert.ok(hpa.spec.metrics.some((m: Obj) => m.pods?.metric.name === 'smtp_lb_sessions_active'));
    const sm = one(objs, 'ServiceMonitor');
    assert.equal(sm.spec.endpoints[0].port, 'admin');
    assert.equal(sm.spec.endpoints[0].path, '/metrics');
    const admin = one(objs, 'Service', 'mx-smtp-lb-admin');
    assert.ok(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => admin.metadata.labels[k] === v));
    assert.equal(admin.metadata.labels[sm.spec.jobLabel], 'smtp-lb', 'scraped as job="smtp-lb"');
    const rules = one(objs, 'PrometheusRule');
    const source = parse(readFileSync(join(DEPLOY, 'prometheus/smtp-lb-alerts.yaml'), 'utf8'));
    assert.deepEqual(rules.spec.groups, source.groups);
    const np = one(objs, 'NetworkPolicy');
    assert.deepEqual(
      np.spec.ingress.map((r: Obj) => r.ports.map((p: Obj) => p.port)),
      [[2525], [9090]],
    );
  });

  test('PROXY protocol: the LB annotation is set and the listener trusts only the LB range', T, () => {
    const objs = render('-f', join(CHART, 'ci/proxy-protocol-values.yaml'));
    const svc = one(objs, 'Service');
    assert.equal(
      svc.metadata.annotations['service.beta.kubernetes.io/aws-load-balancer-proxy-protocol'],
      '*',
    );
    const config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
    assert.deepEqual(config.listeners[0].proxyProtocol.trusted, ['10.0.0.0/16']);
    assert.equal(one(objs, 'Deployment').spec.template.spec.terminationGracePeriodSeconds, 90);
  });

  test(
    'every cloud LB example keeps the client address: Local, and a PROXY header only from the LB',
    T,
    () => {
      for (const f of CLOUD_LBS) {
        const objs = render('-f', join(CHART, 'ci', f));
        const svc = one(objs, 'Service');
        assert.equal(svc.spec.externalTrafficPolicy, 'Local', f);
        const annotations: Record<string, string> = svc.metadata.annotations ?? {};
        const sendsHeader = Object.entries(annotations).some(
          ([k, v]) => /proxy-protocol|proxy_protocol_v2\.enabled=true/.test(`${k}=${v}`) && v !== 'false',
        );
        const config = parse(one(objs, 'ConfigMap').data['smtp-lb.yaml']);
        const trusted: string[] = config.listeners[0].proxyProtocol?.trusted ?? [];
        // A listener that trusts nobody takes no header; one behind a proxying LB trusts its range only.
        assert.equal(
          trusted.length > 0,
          sendsHeader,
          `${f}: PROXY header sent ${sendsHeader}, trusted ${trusted}`,
        );
        for (const range of trusted) assert.doesNotMatch(range, /^0\.0\.0\.0\/0$|^::\/0$/, f);
      }
      // SMTP's server speaks first: the NLB must send its v2 header on the first ACK, or both sides wait.
      const aws = one(render('-f', join(CHART, 'ci/aws-nlb-values.yaml')), 'Service');
      assert.match(
        aws.metadata.annotations['service.beta.kubernetes.io/aws-load-balancer-target-group-attributes'],
        /(^|,)proxy_protocol_v2\.client_to_server\.header_placement=on_first_ack(,|$)/,
      );
    },
  );

  test('a config change rolls the pods; other changes leave the checksum alone', T, () => {
    const checksum = (...args: string[]) =>
      one(render(...args), 'Deployment').spec.template.metadata.annotations['checksum/config'];
    const base = checksum();
    assert.notEqual(checksum('--set', 'config.log.level=debug'), base);
    assert.equal(checksum('--set', 'replicaCount=5'), base);
  });

  test('the schema refuses a bad config value and a misspelt key', T, () => {
    const bad = helmTemplate('--set', 'config.balancing.policy=bogus');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /\/config\/balancing\/policy/);
    const typo = helmTemplate('--set', 'config.balancing.polcy=least-connections');
    assert.notEqual(typo.status, 0);
    assert.match(typo.stderr, /polcy/);
    const top = helmTemplate('--set', 'replicas=3');
    assert.notEqual(top.status, 0);
    assert.match(top.stderr, /additional properties 'replicas' not allowed/);
  });

  test('a ${VAR} passes the schema where the value has a syntax, and the pod must set it', T, () => {
    const values = [
      'config:',
      '  listeners:',
      '    - { name: inbound, listen: "0.0.0.0:2525", hostname: "${MX_NAME}", pool: default }',
      '  log: { level: "${LOG_LEVEL:-info}" }',
    ].join('\n');
    const withEnv = valuesFile(
      'env-ref.yaml',
      `${values}\nextraEnv: [{ name: MX_NAME, value: mx.example.com }]\n`,
    );
    const objs = render('-f', withEnv);
    const file = join(work, 'env-ref.smtp-lb.yaml');
    writeFileSync(file, one(objs, 'ConfigMap').data['smtp-lb.yaml']);
    const container = one(objs, 'Deployment').spec.template.spec.containers[0];
    const r = checkConfig(file, podEnv(container));
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const without = helmTemplate('-f', valuesFile('env-ref-missing.yaml', `${values}\n`));
    assert.notEqual(without.status, 0);
    assert.match(without.stderr, /config uses \$\{MX_NAME\}, which the pod does not set/);
  });

  test('the chart refuses releases that could not work, saying why', T, () => {
    const cases: Array<[string[], RegExp]> = [
      [['--set', 'terminationGracePeriodSeconds=30'], /must be longer than config\.drainTimeout \(30s\)/],
      [
        ['--set', 'config.drainTimeout=2m', '--set', 'terminationGracePeriodSeconds=100'],
        /\(100\) must be longer/,
      ],
      [['--set', 'config.admin.listen=127.0.0.1:9090'], /kubelet probes/],
      [
        ['--set', 'config.ledger.redis=${SMTP_LB_REDIS_URL}'],
        /SMTP_LB_REDIS_URL\}, which the pod does not set/,
      ],
      [['--set', 'redis.enabled=true'], /redis\.existingSecret .* or redis\.url/],
      [['--set', 'tls.enabled=true'], /tls\.secretName/],
      [
        [
          '-f',
          valuesFile(
            'port25.yaml',
            'config:\n  listeners:\n    - { name: inbound, listen: "0.0.0.0:25", hostname: mx.example.com, pool: default }\n',
          ),
        ],
        /listens on port 25: .*listen on 2525/,
      ],
      [
        [
          '-f',
          valuesFile(
            'unknown-listener.yaml',
            'service:\n  ports:\n    - { name: smtp, port: 25, listener: nope }\n',
          ),
        ],
        /listener "nope", which config\.listeners does not have/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = helmTemplate(...args);
      assert.notEqual(r.status, 0, `${args.join(' ')} rendered`);
      assert.match(r.stderr, message);
    }
    // A grace period of one's own that is long enough is kept.
    const ok = render('--set', 'config.drainTimeout=1m30s', '--set', 'terminationGracePeriodSeconds=100');
    assert.equal(one(ok, 'Deployment').spec.template.spec.terminationGracePeriodSeconds, 100);
  });

  test('NOTES.txt renders the port mapping, the grace period and how to see a node', T, () => {
    // helm install --dry-run needs a cluster; render NOTES.txt through a template in a copy instead.
    const copy = join(work, 'chart-notes');
    cpSync(CHART, copy, { recursive: true });
    renameSync(join(copy, 'templates/NOTES.txt'), join(copy, 'files/notes.tpl'));
    writeFileSync(
      join(copy, 'templates/notes.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: notes }\ndata:\n  notes: {{ tpl (.Files.Get "files/notes.tpl") . | quote }}\n',
    );
    const r = run(helm, ['template', 'mx', copy, '-n', 'mail', '--show-only', 'templates/notes.yaml']);
    assert.equal(r.status, 0, r.stderr);
    const notes = (parse(r.stdout) as Obj).data.notes as string;
    assert.match(notes, /port 25 -> listener inbound on container port 2525/);
    assert.match(notes, /grace period is 45s/);
    assert.match(notes, /smtp-lb status --admin http:\/\/127\.0\.0\.1:9090/);
  });
});

describe('deploy/', () => {
  /** Metric names the node exports (packages/proxy/src/metrics.ts): the names, and every series name. */
  function exportedMetrics(): { names: string[]; series: Set<string> } {
    const src = readFileSync(join(ROOT, 'packages/proxy/src/metrics.ts'), 'utf8');
    const names: string[] = [];
    const series = new Set<string>();
    // `new Counter(`, or a subclass named after its kind (`new SummedCounter(`).
    for (const [, kind, name] of src.matchAll(
      /new \w*?(Counter|Gauge|Histogram)\(\{\s*name: '(smtp_lb_\w+)'/g,
    )) {
      names.push(name!);
      series.add(name!);
      if (kind === 'Histogram') for (const s of ['_bucket', '_sum', '_count']) series.add(name + s);
    }
    assert.ok(names.length >= 15, `found only ${names.length} metrics in metrics.ts`);
    return { names, series };
  }

  test('promtool: the alert rules are valid and their unit tests pass', T, () => {
    const check = run('promtool', ['check', 'rules', join(DEPLOY, 'prometheus/smtp-lb-alerts.yaml')]);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout + check.stderr, /SUCCESS: \d+ rules found/);
    const unit = run('promtool', ['test', 'rules', join(DEPLOY, 'prometheus/smtp-lb-alerts.test.yaml')]);
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);
    const config = run('promtool', ['check', 'config', join(DEPLOY, 'prometheus/prometheus.yml')]);
    assert.equal(config.status, 0, config.stdout + config.stderr);
  });

  test('alert rules and dashboard read only metrics the node exports', T, () => {
    const exported = exportedMetrics();
    const rules = parse(readFileSync(join(DEPLOY, 'prometheus/smtp-lb-alerts.yaml'), 'utf8'));
    const records = new Set<string>();
    const ruleExprs: string[] = [];
    for (const g of rules.groups) {
      for (const r of g.rules) {
        if (r.record) records.add(r.record);
        ruleExprs.push(r.expr);
      }
    }
    // Not the node's: Prometheus's own `up`, kube-state-metrics, and the rules' recorded series.
    const outside = new Set(['up', 'kube_pod_container_status_ready', ...records]);
    const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana/smtp-lb-dashboard.json'), 'utf8'));
    const dashExprs: string[] = dashboard.panels.flatMap((p: Obj) =>
      (p.targets ?? []).map((t: Obj) => t.expr),
    );
    assert.ok(dashExprs.length >= 15);
    for (const expr of [...ruleExprs, ...dashExprs]) {
      for (const [m] of expr.matchAll(/\b(smtp_lb[:_][\w:]*|up|kube_\w+)\b/g)) {
        assert.ok(exported.series.has(m) || outside.has(m), `${m} is not exported by the node (in: ${expr})`);
      }
    }
    const shown = dashExprs.join('\n');
    for (const m of exported.names) {
      if (!m.startsWith('smtp_lb_process_')) assert.ok(shown.includes(m), `the dashboard does not show ${m}`);
    }
  });

  test('every dashboard query parses as PromQL', T, () => {
    const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana/smtp-lb-dashboard.json'), 'utf8'));
    const exprs: string[] = dashboard.panels.flatMap((p: Obj) => (p.targets ?? []).map((t: Obj) => t.expr));
    const rules = exprs.map((expr, i) => ({
      record: `dashboard:query_${i}`,
      expr: expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*').replaceAll('$pool', '.*'),
    }));
    const file = valuesFile(
      'dashboard-rules.yaml',
      JSON.stringify({ groups: [{ name: 'dashboard', rules }] }),
    );
    const r = run('promtool', ['check', 'rules', file]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(dashboard.uid, 'smtp-lb');
    assert.ok(dashboard.templating.list.some((v: Obj) => v.type === 'datasource'));
  });

  describe('compose.yaml', () => {
    const compose = () => parse(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8'), { merge: true }) as Obj;
    const nodes = () =>
      Object.entries(compose().services as Obj).filter(
        ([, s]) => (s as Obj).build?.dockerfile === 'deploy/Dockerfile',
      );

    test('two smtp-lb nodes whose config passes check-config with their environment', T, () => {
      assert.equal(nodes().length, 2);
      for (const [name, s] of nodes()) {
        const mount = (s.volumes as string[]).find((v) => v.includes(':/etc/smtp-lb/smtp-lb.yaml'))!;
        const file = join(DEPLOY, mount.split(':')[0]!);
        const r = checkConfig(file, s.environment);
        assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /: OK \(/);
        const config = parse(readFileSync(file, 'utf8'));
        assert.ok(
          durationMs(s.stop_grace_period) > durationMs(config.drainTimeout),
          `${name}: stop_grace_period ${s.stop_grace_period} is not longer than drainTimeout ${config.drainTimeout}`,
        );
        assert.equal(s.environment.CONSUL_HTTP_ADDR, 'http://consul:8500');
        assert.match(s.environment.SMTP_LB_REDIS_URL, /^redis:\/\/redis:6379\//);
      }
      const services = compose().services;
      for (const needed of ['consul', 'redis', 'postfix-1', 'postfix-2']) assert.ok(services[needed], needed);
    });

    test('Consul registers both Postfix containers, and Postfix accepts XCLIENT from the nodes', T, () => {
      const services = compose().services;
      const ip = (name: string) => services[name].networks.mail.ipv4_address as string;
      const consul = JSON.parse(readFileSync(join(DEPLOY, 'compose/consul/mta.json'), 'utf8'));
      const registered = consul.services.map((s: Obj) => `${s.address}:${s.port}`).sort();
      assert.deepEqual(registered, [`${ip('postfix-1')}:25`, `${ip('postfix-2')}:25`]);
      for (const s of consul.services) {
        assert.equal(s.name, 'mta');
        assert.equal(s.checks[0].tcp, `${s.address}:${s.port}`);
        assert.match(s.meta['smtp-lb-max-connections'], /^\d+$/);
      }
      const mainCf = readFileSync(join(DEPLOY, 'postfix/main.cf'), 'utf8');
      const cidr = /^smtpd_authorized_xclient_hosts = (\d+\.\d+\.\d+)\.0\/24$/m.exec(mainCf);
      assert.ok(cidr, 'main.cf authorises a /24 for XCLIENT');
      for (const [name] of nodes())
        assert.ok(ip(name).startsWith(`${cidr[1]}.`), `${name} is outside ${cidr[1]}.0/24`);
    });

    test("Postfix's main.cf has no unknown parameters (postconf)", T, () => {
      const dir = join(work, 'postfix');
      mkdirSync(dir, { recursive: true });
      cpSync(join(DEPLOY, 'postfix/main.cf'), join(dir, 'main.cf'));
      cpSync('/etc/postfix/master.cf', join(dir, 'master.cf'));
      const r = run('postconf', ['-c', dir, '-n']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', 'postconf warned');
      assert.match(r.stdout, /^smtpd_authorized_xclient_hosts = /m);
    });

    test('the Dockerfile builds a non-root image the chart can run', T, () => {
      const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
      const stages = dockerfile.split(/^FROM /m).slice(1);
      assert.ok(stages.length >= 2, 'multi-stage');
      for (const s of stages) assert.match(s, /^node:24-bookworm-slim\b/);
      const final = stages.at(-1)!;
      assert.match(final, /npm ci --omit=dev/);
      const user = /^USER (\d+)/m.exec(final);
      assert.ok(user && user[1] !== '0', 'a numeric non-root USER');
      const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
      assert.equal(values.podSecurityContext.runAsUser, Number(user[1]));
      assert.match(final, /^ENTRYPOINT \["smtp-lb"\]/m);
      assert.match(final, /^CMD \["--config", "\/etc\/smtp-lb\/smtp-lb.yaml"\]/m);
    });
  });
});
