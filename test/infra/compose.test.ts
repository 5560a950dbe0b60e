// Checks the deployment files (docker-compose.yml, infra/Dockerfile, infra/nginx/nginx.conf) against each other and
// against services/config.ts, so a renamed env var, port, credential, bucket or volume breaks a test instead of a deploy.
// Docker is not needed: everything is read and parsed as text.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ENV_SCHEMA, loadConfig, type Config } from '../../services/config.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const DOCKERFILE = path.join(ROOT, 'infra', 'Dockerfile');
const NGINX_CONF = path.join(ROOT, 'infra', 'nginx', 'nginx.conf');

type Rec = Record<string, unknown>;

function isRec(v: unknown): v is Rec {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rec(v: unknown, what: string): Rec {
  if (!isRec(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new Error(`${what}: expected a scalar, got ${JSON.stringify(v)}`);
}

function strList(v: unknown, what: string): string[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v.map((x, i) => str(x, `${what}[${i}]`));
}

const DUMMY_REQUIRED = 'x'.repeat(24);

/** Compose-style interpolation: ${VAR:-default}/${VAR-default} → default, ${VAR:?msg}/${VAR?msg} → a dummy value. */
function interpolate(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}/g, (m, name: string | undefined, dash: string | undefined, def: string | undefined, q: string | undefined) => {
    if (m === '$$') return '$';
    if (dash !== undefined) return def ?? '';
    if (q !== undefined) return DUMMY_REQUIRED;
    throw new Error(`\${${name}} has no default: the test cannot tell what the app gets`);
  });
}

/** A service's environment as a map (accepts both the mapping and the KEY=VALUE list forms). */
function envOf(service: Rec, what: string): Record<string, string> {
  const env = service.environment;
  if (env === undefined) return {};
  if (Array.isArray(env)) {
    const out: Record<string, string> = {};
    for (const line of strList(env, `${what}.environment`)) {
      const eq = line.indexOf('=');
      if (eq < 0) throw new Error(`${what}.environment: "${line}" has no value`);
      out[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return out;
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(rec(env, `${what}.environment`))) out[k] = str(v, `${what}.environment.${k}`);
  return out;
}

interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Short-syntax volume entries ("src:target[:ro]"). */
function mountsOf(service: Rec, what: string): Mount[] {
  if (service.volumes === undefined) return [];
  return strList(service.volumes, `${what}.volumes`).map((v) => {
    const [source, target, mode] = v.split(':');
    if (source === undefined || target === undefined) throw new Error(`${what}.volumes: "${v}" is not source:target`);
    return { source, target, readOnly: (mode ?? '').split(',').includes('ro') };
  });
}

interface PortMapping {
  host: [number, number];
  container: [number, number];
  protocol: string;
}

function parseRange(r: string): [number, number] {
  const [a, b] = r.split('-');
  const lo = Number(a);
  const hi = b === undefined ? lo : Number(b);
  if (!Number.isInteger(lo) || !Number.isInteger(hi)) throw new Error(`bad port range "${r}"`);
  return [lo, hi];
}

/** Short-syntax published ports ("[ip:]host:container[/proto]"). */
function portsOf(service: Rec, what: string): PortMapping[] {
  if (service.ports === undefined) return [];
  return strList(service.ports, `${what}.ports`).map((p) => {
    const [spec, protocol = 'tcp'] = p.split('/');
    const parts = (spec ?? '').split(':');
    const container = parts.at(-1);
    const host = parts.at(-2);
    if (container === undefined || host === undefined) throw new Error(`${what}.ports: "${p}" does not publish a host port`);
    return { host: parseRange(host), container: parseRange(container), protocol };
  });
}

/** The target of a dependency in long-syntax depends_on, or undefined. */
function dependsCondition(service: Rec, on: string): string | undefined {
  const deps = service.depends_on;
  if (Array.isArray(deps)) return deps.includes(on) ? 'service_started' : undefined;
  if (!isRec(deps) || !(on in deps)) return undefined;
  const d = deps[on];
  return isRec(d) && typeof d.condition === 'string' ? d.condition : 'service_started';
}

interface DockerStage {
  lines: string[];
  args: Record<string, string>;
}

/** Dockerfile instructions (continuations joined, comments dropped), split into stages; global ARG defaults apply. */
function parseDockerfile(text: string): { globalArgs: Record<string, string>; stages: DockerStage[] } {
  const instructions: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') && current === '') continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' ';
      continue;
    }
    current += line;
    if (current.trim() !== '') instructions.push(current.trim());
    current = '';
  }
  const globalArgs: Record<string, string> = {};
  const stages: DockerStage[] = [];
  for (const ins of instructions) {
    const [kw = '', ...rest] = ins.split(/\s+/);
    const upper = kw.toUpperCase();
    if (upper === 'FROM') {
      stages.push({ lines: [ins], args: {} });
      continue;
    }
    const stage = stages.at(-1);
    if (upper === 'ARG') {
      const [name = '', def] = rest.join(' ').split('=');
      if (stage === undefined) globalArgs[name] = def ?? '';
      else stage.args[name] = def ?? globalArgs[name] ?? '';
    }
    if (stage !== undefined) stage.lines.push(ins);
  }
  return { globalArgs, stages };
}

function substituteArgs(value: string, args: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b) as string;
    const v = args[name];
    if (v === undefined) throw new Error(`Dockerfile uses $${name}, which is not an ARG of that stage`);
    return v;
  });
}

/** ENV values set in a stage ("ENV K=V [K2=V2]" or "ENV K V"), ARGs substituted. */
function stageEnv(stage: DockerStage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const ins of stage.lines) {
    const m = /^ENV\s+(.*)$/i.exec(ins);
    if (!m?.[1]) continue;
    const body = m[1].trim();
    if (/^[A-Za-z_][A-Za-z0-9_]*\s+[^=]*$/.test(body) && !body.includes('=')) {
      const [k = '', ...v] = body.split(/\s+/);
      out[k] = substituteArgs(v.join(' '), stage.args);
      continue;
    }
    for (const pair of body.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|\S*)/g) ?? []) {
      const eq = pair.indexOf('=');
      out[pair.slice(0, eq)] = substituteArgs(pair.slice(eq + 1).replace(/^"|"$/g, ''), stage.args);
    }
  }
  return out;
}

describe('deployment files (docker-compose.yml, infra/Dockerfile, infra/nginx/nginx.conf)', () => {
  const compose = rec(YAML.parse(fs.readFileSync(COMPOSE_FILE, 'utf8')), 'docker-compose.yml');
  const services = rec(compose.services, 'services');
  const svc = (name: string): Rec => rec(services[name], `services.${name}`);
  const nginxConf = fs.readFileSync(NGINX_CONF, 'utf8');

  const appEnvRaw = envOf(svc('app'), 'app');
  const appEnv: Record<string, string> = Object.fromEntries(Object.entries(appEnvRaw).map(([k, v]) => [k, interpolate(v)]));
  let config: Config;
  before(() => {
    config = loadConfig(appEnv);
  });

  describe('docker-compose.yml', () => {
    it('defines app, postgres, minio, minio-init and nginx', () => {
      expect(Object.keys(services)).to.include.members(['app', 'postgres', 'minio', 'minio-init', 'nginx']);
    });

    it('builds app from infra/Dockerfile with the repo root as context, not on the host network', () => {
      const build = rec(svc('app').build, 'app.build');
      expect(path.resolve(ROOT, str(build.context, 'context'))).to.equal(ROOT);
      expect(path.resolve(ROOT, str(build.dockerfile, 'dockerfile'))).to.equal(DOCKERFILE);
      expect(svc('app').network_mode).to.equal(undefined);
    });

    it('gives app only environment variables that services/config.ts reads', () => {
      // zod 4: superRefine() returns the object schema itself (there is no innerType()).
      const known = Object.keys(ENV_SCHEMA.shape);
      const unknown = Object.keys(appEnvRaw).filter((k) => !known.includes(k));
      expect(unknown, 'not in ENV_SCHEMA').to.deep.equal([]);
      expect(Object.keys(appEnvRaw)).to.include.members(['DATABASE_URL', 'S3_BUCKET', 'CDN_DIR', 'RTC_MIN_PORT', 'RTC_MAX_PORT']);
    });

    it('requires ADMIN_TOKEN from the host instead of baking one in', () => {
      expect(appEnvRaw.ADMIN_TOKEN).to.match(/^\$\{ADMIN_TOKEN:\?[^}]*\}$/);
    });

    it("app's environment passes loadConfig(): postgres database, S3 archive with path-style URLs", () => {
      expect(config.db.kind).to.equal('postgres');
      expect(config.archive.kind).to.equal('s3');
      if (config.archive.kind !== 's3') return;
      expect(config.archive.forcePathStyle).to.equal(true);
      expect(config.adminTokenGenerated).to.equal(false);
    });

    it('publishes the app\'s port, and PUBLIC_URL points at nginx\'s published TLS port (the public entry)', () => {
      const http = portsOf(svc('app'), 'app').find((p) => p.protocol === 'tcp' && p.container[0] === config.http.port);
      expect(http, `a tcp port publishing container port ${config.http.port}`).to.not.equal(undefined);
      const publicUrl = new URL(config.http.publicUrl ?? 'http://missing');
      expect(publicUrl.protocol).to.equal('https:');
      const entry = portsOf(svc('nginx'), 'nginx').find((p) => p.host[0] === Number(publicUrl.port || 443));
      expect(entry, `nginx publishes port ${publicUrl.port}`).to.not.equal(undefined);
      expect(nginxConf).to.match(new RegExp(`listen\\s+${entry?.container[0]}\\s+ssl\\s*;`));
    });

    it('nginx serves the certificate the app keeps: the app\'s TLS folder is a volume nginx mounts read-only where nginx.conf reads it', () => {
      expect(config.tls.mode).to.equal('self-signed');
      const tls = config.tls;
      if (tls.mode !== 'self-signed') return;
      const appTls = mountsOf(svc('app'), 'app').find((m) => path.posix.resolve(m.target) === tls.dir.replace(ROOT, '/app'));
      expect(appTls, `a volume at the app's TLS_DIR (${tls.dir})`).to.not.equal(undefined);
      const nginxTls = mountsOf(svc('nginx'), 'nginx').find((m) => m.source === appTls?.source);
      expect(nginxTls?.readOnly).to.equal(true);
      expect(nginxConf).to.include(`ssl_certificate ${nginxTls?.target}/cert.pem;`);
      expect(nginxConf).to.include(`ssl_certificate_key ${nginxTls?.target}/key.pem;`);
    });

    it('publishes exactly the RTC UDP port range, with identical host and container ports', () => {
      const udp = portsOf(svc('app'), 'app').filter((p) => p.protocol === 'udp');
      expect(udp).to.have.length(1);
      const [range] = udp;
      expect(range?.container).to.deep.equal([config.mediasoup.rtcMinPort, config.mediasoup.rtcMaxPort]);
      expect(range?.host).to.deep.equal(range?.container);
      expect(config.mediasoup.listenIp).to.equal('0.0.0.0');
      expect(config.mediasoup.announcedIp).to.be.a('string').and.not.equal('0.0.0.0');
    });

    it('DATABASE_URL points at the postgres service with its user, password and database', () => {
      if (config.db.kind !== 'postgres') throw new Error('expected a postgres database');
      const url = new URL(config.db.url);
      const pg = envOf(svc('postgres'), 'postgres');
      expect(url.hostname).to.equal('postgres');
      expect(services).to.have.property(url.hostname);
      expect(url.port || '5432').to.equal('5432');
      expect(decodeURIComponent(url.username)).to.equal(pg.POSTGRES_USER);
      expect(decodeURIComponent(url.password)).to.equal(pg.POSTGRES_PASSWORD);
      expect(url.pathname.replace(/^\//, '')).to.equal(pg.POSTGRES_DB);
    });

    it('app waits for a healthy postgres and minio and for the bucket to exist', () => {
      expect(dependsCondition(svc('app'), 'postgres')).to.equal('service_healthy');
      expect(svc('postgres')).to.have.property('healthcheck');
      expect(strList(rec(svc('postgres').healthcheck, 'postgres.healthcheck').test, 'test').join(' ')).to.include('pg_isready');
      expect(dependsCondition(svc('app'), 'minio')).to.be.oneOf(['service_healthy', 'service_started']);
      expect(svc('minio')).to.have.property('healthcheck');
      expect(dependsCondition(svc('app'), 'minio-init')).to.equal('service_completed_successfully');
      expect(dependsCondition(svc('minio-init'), 'minio')).to.equal('service_healthy');
    });

    it('the S3 endpoint is the minio service with its root credentials', () => {
      if (config.archive.kind !== 's3') throw new Error('expected an S3 archive');
      const minio = envOf(svc('minio'), 'minio');
      const endpoint = new URL(config.archive.endpoint ?? 'http://missing');
      expect(endpoint.hostname).to.equal('minio');
      expect(endpoint.port).to.equal('9000');
      expect(strList(svc('minio').command, 'minio.command')).to.include.members(['server', '/data']);
      expect(config.archive.accessKeyId).to.equal(minio.MINIO_ROOT_USER);
      expect(config.archive.secretAccessKey).to.equal(minio.MINIO_ROOT_PASSWORD);
      expect(minio.MINIO_ROOT_PASSWORD?.length ?? 0, 'MinIO refuses root passwords under 8 characters').to.be.at.least(8);
    });

    it('minio-init creates the bucket the app archives to, on the same minio with the same credentials', () => {
      if (config.archive.kind !== 's3') throw new Error('expected an S3 archive');
      const command = strList(svc('minio-init').command, 'minio-init.command');
      expect(command[0]).to.equal('mb');
      const target = command.at(-1) ?? '';
      const [alias = '', bucket] = target.split('/');
      expect(bucket).to.equal(config.archive.bucket);
      const host = envOf(svc('minio-init'), 'minio-init')[`MC_HOST_${alias}`];
      expect(host, `MC_HOST_${alias}`).to.be.a('string');
      const url = new URL(host ?? 'http://missing');
      const minio = envOf(svc('minio'), 'minio');
      expect(url.host).to.equal(new URL(config.archive.endpoint ?? 'http://missing').host);
      expect(decodeURIComponent(url.username)).to.equal(minio.MINIO_ROOT_USER);
      expect(decodeURIComponent(url.password)).to.equal(minio.MINIO_ROOT_PASSWORD);
    });

    it('nginx mounts infra/nginx/nginx.conf and, read-only, the volume app writes HLS into', () => {
      const nginxMounts = mountsOf(svc('nginx'), 'nginx');
      const confMount = nginxMounts.find((m) => m.target === '/etc/nginx/nginx.conf');
      expect(confMount, 'nginx.conf mount').to.not.equal(undefined);
      expect(path.resolve(ROOT, confMount?.source ?? '')).to.equal(NGINX_CONF);
      expect(fs.existsSync(NGINX_CONF)).to.equal(true);

      const cdnMount = mountsOf(svc('app'), 'app').find((m) => path.posix.resolve(m.target) === config.cdn.dir);
      expect(cdnMount, `a volume mounted at CDN_DIR (${config.cdn.dir})`).to.not.equal(undefined);
      expect(rec(compose.volumes, 'volumes')).to.have.property(cdnMount?.source ?? '');
      const shared = nginxMounts.find((m) => m.source === cdnMount?.source);
      expect(shared, 'nginx mounts the same volume').to.not.equal(undefined);
      expect(shared?.readOnly).to.equal(true);
      expect(dependsCondition(svc('nginx'), 'app')).to.not.equal(undefined);
    });

    it('PUBLIC_HLS_BASE_URL resolves, through nginx, to the files the app writes in CDN_DIR/live/', () => {
      // The app writes <CDN_DIR>/live/<stageId>/index.m3u8 and links <PUBLIC_HLS_BASE_URL>/<stageId>/index.m3u8.
      const hls = new URL(`${config.cdn.publicHlsBaseUrl ?? 'http://missing'}/s1/index.m3u8`);
      const nginxHttp = portsOf(svc('nginx'), 'nginx').find((p) => p.host[0] === Number(hls.port || 80));
      expect(nginxHttp, `nginx publishes port ${hls.port}`).to.not.equal(undefined);
      expect(nginxConf).to.match(new RegExp(`listen\\s+${nginxHttp?.container[0]}(\\s+ssl)?\\s*;`));

      // The live location: the whitelisted names under /live/<stageId>/ (everything else under /live/ is a 404).
      const live = /location\s+~\s+"\^\/live\/[^"]*"\s*\{[^}]*?\broot\s+([^\s;]+);/.exec(nginxConf);
      expect(live, 'location ~ "^/live/..." { root ... }').to.not.equal(null);
      const nginxCdn = mountsOf(svc('nginx'), 'nginx').find((m) => m.target === live?.[1]);
      const appCdn = mountsOf(svc('app'), 'app').find((m) => path.posix.resolve(m.target) === config.cdn.dir);
      expect(nginxCdn?.source, 'nginx root is the shared cdn volume').to.equal(appCdn?.source);
      expect(hls.pathname).to.equal('/live/s1/index.m3u8');
    });
  });

  describe('infra/Dockerfile', () => {
    const text = fs.existsSync(DOCKERFILE) ? fs.readFileSync(DOCKERFILE, 'utf8') : '';
    const { stages } = parseDockerfile(text);
    const final = stages.at(-1);

    it('exists and is multi-stage on node:20-bookworm-slim', () => {
      expect(text, 'infra/Dockerfile').to.not.equal('');
      expect(stages.length).to.be.at.least(2);
      for (const s of stages) expect(s.lines[0]).to.match(/^FROM\s+node:20-bookworm-slim\b/i);
    });

    it('runs setup.mjs --no-apt in the build stage and the app directly (not npm start) in the final stage', () => {
      expect(text).to.match(/RUN\s+node\s+infra\/setup\.mjs\s+--no-apt\b/);
      const cmds = (final?.lines ?? []).filter((l) => /^CMD\s/i.test(l));
      const cmd = cmds.at(-1);
      expect(cmd, 'final stage CMD').to.be.a('string');
      const argv = JSON.parse((cmd ?? '').replace(/^CMD\s+/i, '')) as unknown;
      expect(argv).to.deep.equal(['node', '--import', 'tsx', 'services/main.ts']);
      expect(fs.existsSync(path.join(ROOT, 'package.json'))).to.equal(true);
      expect((final?.lines ?? []).some((l) => /^USER\s+node$/i.test(l))).to.equal(true);
      expect((final?.lines ?? []).some((l) => /^EXPOSE\s+.*\b8080\b/i.test(l))).to.equal(true);
    });

    it('sets MEDIASOUP_WORKER_BIN in the final stage to the worker setup caches, copied from the build stage', () => {
      const env = stageEnv(final ?? { lines: [], args: {} });
      const bin = env.MEDIASOUP_WORKER_BIN;
      expect(bin, 'MEDIASOUP_WORKER_BIN').to.be.a('string');

      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      const msVersion = pkg.dependencies.mediasoup;
      const build = stages.find((s) => s !== final && stageEnv(s).XDG_CACHE_HOME !== undefined);
      const cacheHome = build ? stageEnv(build).XDG_CACHE_HOME : undefined;
      expect(cacheHome, 'XDG_CACHE_HOME in the build stage').to.be.a('string');
      const workerDir = path.posix.join(cacheHome ?? '', 'stage-radio', 'mediasoup-worker');
      expect(bin).to.equal(path.posix.join(workerDir, `${msVersion}-linux-x64`, 'mediasoup-worker'));
      expect(final?.lines).to.satisfy((lines: string[]) =>
        lines.some((l) => new RegExp(`^COPY\\s+--from=\\S+\\s+${workerDir}/?\\s+${workerDir}/?$`).test(l)),
      );
      // The build stage must not set it: setup.mjs would then expect the binary to exist already.
      expect(build ? stageEnv(build).MEDIASOUP_WORKER_BIN : undefined).to.equal(undefined);
    });
  });

  describe("docker-compose.yml's cluster profile and infra/nginx/cluster.conf", () => {
    const clusterNodes = ['node-1', 'node-2'];
    const clusterConf = fs.readFileSync(path.join(ROOT, 'infra', 'nginx', 'cluster.conf'), 'utf8');
    const nodeEnv = (name: string) => Object.fromEntries(Object.entries(envOf(svc(name), name)).map(([k, v]) => [k, interpolate(v)]));

    it('adds redis, two nodes and their nginx, only under the profile, and the nodes share postgres and the bucket', () => {
      for (const name of ['redis', ...clusterNodes, 'nginx-cluster']) expect(svc(name).profiles, name).to.deep.equal(['cluster']);
      for (const name of ['app', 'postgres', 'minio', 'nginx']) expect(svc(name).profiles, name).to.equal(undefined);
      const configs = clusterNodes.map((n) => loadConfig(nodeEnv(n)));
      for (const c of configs) {
        expect(c.cluster, 'cluster mode').to.not.equal(null);
        expect(new URL(c.cluster!.redisUrl).hostname).to.equal('redis');
        expect(c.db).to.deep.equal(config.db);
        expect(c.archive).to.deep.equal(config.archive);
      }
      expect(new Set(configs.map((c) => c.cluster!.nodeId)).size, 'distinct NODE_IDs').to.equal(2);
      expect(new Set(configs.map((c) => c.cluster!.publicUrl)).size, 'distinct NODE_PUBLIC_URLs').to.equal(2);
    });

    it('gives each node its own published port (its NODE_PUBLIC_URL), RTC port range, CDN folder, spool and journal', () => {
      const ranges = clusterNodes.map((n) => loadConfig(nodeEnv(n)).mediasoup);
      expect(ranges[0]!.rtcMaxPort < ranges[1]!.rtcMinPort || ranges[1]!.rtcMaxPort < ranges[0]!.rtcMinPort, 'RTC ranges do not overlap').to.equal(true);
      const appRange = config.mediasoup;
      for (const r of ranges) expect(r.rtcMaxPort < appRange.rtcMinPort || appRange.rtcMaxPort < r.rtcMinPort, 'nor the app').to.equal(true);
      const volumes = clusterNodes.map((n) => mountsOf(svc(n), n).map((v) => v.source));
      expect(volumes[0]!.filter((v) => volumes[1]!.includes(v)), 'no volume shared by the nodes').to.deep.equal([]);
      for (const n of clusterNodes) {
        const c = loadConfig(nodeEnv(n));
        const published = portsOf(svc(n), n).find((p) => p.protocol === 'tcp' && p.container[0] === c.http.port);
        expect(published, `${n} publishes its HTTP port`).to.not.equal(undefined);
        expect(Number(new URL(c.cluster!.publicUrl!).port)).to.equal(published!.host[0]);
      }
    });

    it('nginx-cluster mounts cluster.conf, whose upstream names every node on its port, with websocket upgrades', () => {
      expect(mountsOf(svc('nginx-cluster'), 'nginx-cluster').map((v) => `${v.source}:${v.target}`)).to.include('./infra/nginx/cluster.conf:/etc/nginx/nginx.conf');
      const upstream = /upstream\s+stage_radio_nodes\s*\{([^}]*)\}/.exec(clusterConf)?.[1] ?? '';
      const servers = [...upstream.matchAll(/server\s+([\w-]+):(\d+)/g)].map((m) => ({ host: m[1], port: Number(m[2]) }));
      expect(servers.map((x) => x.host)).to.deep.equal(clusterNodes);
      for (const x of servers) expect(x.port).to.equal(loadConfig(nodeEnv(x.host!)).http.port);
      const socketIo = /location\s+\/socket\.io\/\s*\{([^}]*)\}/.exec(clusterConf)?.[1] ?? '';
      expect(socketIo).to.match(/proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;/);
      expect(socketIo).to.match(/proxy_pass\s+http:\/\/stage_radio_nodes\s*;/);
    });
  });

  describe('infra/nginx/nginx.conf', () => {
    it('proxies to the app service on its port, including websocket upgrades for /socket.io/', () => {
      const targets = [...nginxConf.matchAll(/(?:proxy_pass|set\s+\$\w+)\s+(https?:\/\/[^\s;]+)\s*;/g)].map((m) => new URL(m[1] ?? ''));
      expect(targets).to.not.be.empty;
      for (const t of targets) {
        expect(t.hostname).to.equal('app');
        expect(services).to.have.property(t.hostname);
        expect(Number(t.port)).to.equal(config.http.port);
      }
      const socketIo = /location\s+\/socket\.io\/\s*\{([^}]*)\}/.exec(nginxConf)?.[1] ?? '';
      expect(socketIo).to.match(/proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;/);
      expect(socketIo).to.match(/proxy_set_header\s+Connection\s+\$\w+\s*;/);
      expect(socketIo).to.match(/proxy_http_version\s+1\.1\s*;/);
    });

    it('serves playlists as application/vnd.apple.mpegurl and fMP4 init sections, segments and parts as audio/mp4', () => {
      expect(nginxConf).to.match(/application\/vnd\.apple\.mpegurl\s+m3u8\s*;/);
      expect(nginxConf).to.match(/audio\/mp4\s+m4s\s+mp4\s*;/);
      expect(nginxConf, 'no MPEG-TS is served').to.not.match(/video\/mp2t/);
      expect(nginxConf).to.match(/Access-Control-Allow-Origin\s+"?\*"?/);
      expect(nginxConf).to.match(/"no-cache, max-age=1"/);
      expect(nginxConf).to.match(/"public, max-age=31536000, immutable"/);
      expect(nginxConf).to.not.match(/autoindex\s+on/);
    });
  });
});
