import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, ENV_SCHEMA, loadConfig } from '../../services/config.ts';

describe('config', () => {
  it('has embedded defaults with no env vars: PGlite, local archive, cdn/ folder, a generated admin token', () => {
    const c = loadConfig({});
    expect(c.http.port).to.equal(8080);
    expect(c.db.kind).to.equal('pglite');
    expect(c.archive.kind).to.equal('local');
    expect(c.cdn.dir).to.equal(path.join(c.paths.projectRoot, 'cdn'));
    expect(c.cdn.publicHlsBaseUrl).to.equal(null);
    expect(c.stage.maxPerformers).to.equal(8);
    expect(c.adminTokenGenerated).to.equal(true);
    expect(c.adminToken.length).to.be.at.least(24);
    expect(loadConfig({}).adminToken, 'a new token per run').to.not.equal(c.adminToken);
    expect(c.mediasoup).to.include({ listenIp: '0.0.0.0', announcedIp: '127.0.0.1', rtcMinPort: 40000, rtcMaxPort: 49999 });
  });

  it('reads every setting', () => {
    const c = loadConfig({
      PORT: '9000',
      PUBLIC_URL: 'https://radio.example.com/',
      ADMIN_TOKEN: 'a'.repeat(32),
      RTC_LISTEN_IP: '10.0.0.5',
      RTC_ANNOUNCED_IP: '203.0.113.7',
      RTC_MIN_PORT: '41000',
      RTC_MAX_PORT: '41999',
      MEDIASOUP_WORKERS: '3',
      DATABASE_URL: 'postgres://u:p@db:5432/radio',
      MAX_PERFORMERS_PER_STAGE: '12',
      PUBLIC_HLS_BASE_URL: 'https://cdn.example.com/live/',
      S3_BUCKET: 'broadcasts',
      S3_ENDPOINT: 'http://minio:9000',
      S3_FORCE_PATH_STYLE: 'true',
    });
    expect(c.http).to.deep.equal({ port: 9000, host: '0.0.0.0', publicUrl: 'https://radio.example.com' });
    expect(c.adminTokenGenerated).to.equal(false);
    expect(c.mediasoup).to.include({ numWorkers: 3, listenIp: '10.0.0.5', announcedIp: '203.0.113.7', rtcMinPort: 41000, rtcMaxPort: 41999 });
    expect(c.db).to.deep.equal({ kind: 'postgres', url: 'postgres://u:p@db:5432/radio' });
    expect(c.stage.maxPerformers).to.equal(12);
    expect(c.cdn.publicHlsBaseUrl).to.equal('https://cdn.example.com/live');
    expect(c.archive).to.deep.include({ kind: 's3', bucket: 'broadcasts', endpoint: 'http://minio:9000', forcePathStyle: true });
  });

  it('refuses bad values with one clear message naming every bad variable', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', ADMIN_TOKEN: 'short', DATABASE_URL: 'mysql://x', MAX_PERFORMERS_PER_STAGE: '0', RTC_LISTEN_IP: 'here' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).to.include('PORT: must be a port number');
    for (const name of ['ADMIN_TOKEN', 'DATABASE_URL', 'MAX_PERFORMERS_PER_STAGE', 'RTC_LISTEN_IP']) expect(msg).to.include(name);
    // Checks across variables run once each variable is valid on its own.
    expect(() => loadConfig({ RTC_MIN_PORT: '50000', RTC_MAX_PORT: '40000' })).to.throw(ConfigError, /RTC_MIN_PORT: must not be greater than RTC_MAX_PORT/);
    expect(() => loadConfig({ S3_ENDPOINT: 'http://s3:9000' })).to.throw(ConfigError, /S3_BUCKET: is required/);
    expect(() => loadConfig({ TLS_CERT_FILE: '/etc/ssl/cert.pem' })).to.throw(ConfigError, /TLS_KEY_FILE: is required when the other TLS_\*_FILE is set/);
    expect(() => loadConfig({ TLS_HOSTNAMES: 'radio.lan, bad name' })).to.throw(ConfigError, /TLS_HOSTNAMES: must be comma-separated/);
  });

  it('TLS: a self-signed certificate for this machine and the configured names by default; given files; or off', () => {
    const auto = loadConfig({ TLS_HOSTNAMES: 'radio.lan,192.168.1.20', PUBLIC_URL: 'https://radio.example.org' });
    expect(auto.tls.mode).to.equal('self-signed');
    if (auto.tls.mode !== 'self-signed') return;
    expect(auto.tls.names).to.include.members(['localhost', '127.0.0.1', 'radio.lan', '192.168.1.20', 'radio.example.org', os.hostname().toLowerCase()]);
    expect(loadConfig({ TLS_CERT_FILE: 'c.pem', TLS_KEY_FILE: 'k.pem' }).tls).to.deep.equal({ mode: 'files', certFile: path.resolve('c.pem'), keyFile: path.resolve('k.pem') });
    expect(loadConfig({ TLS: 'off', TLS_CERT_FILE: 'c.pem', TLS_KEY_FILE: 'k.pem' }).tls).to.deep.equal({ mode: 'off' });
  });

  it('cluster mode: off without REDIS_URL; with it, DATABASE_URL and ADMIN_TOKEN are required, NODE_ID checked or generated, the node URL taken from NODE_PUBLIC_URL, else PUBLIC_URL', () => {
    expect(loadConfig({}).cluster).to.equal(null);
    expect(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', ADMIN_TOKEN: 'a'.repeat(32) })).to.throw(ConfigError, /DATABASE_URL: is required with REDIS_URL/);
    expect(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://u@db/radio' })).to.throw(ConfigError, /ADMIN_TOKEN: is required with REDIS_URL/);
    const db = { DATABASE_URL: 'postgres://u@db/radio', REDIS_URL: 'redis://127.0.0.1:6379', ADMIN_TOKEN: 'a'.repeat(32) };
    expect(loadConfig({ ...db, NODE_ID: 'node-a', NODE_PUBLIC_URL: 'https://a.example.com/', PUBLIC_URL: 'https://radio.example.com' }).cluster).to.deep.equal({
      redisUrl: 'redis://127.0.0.1:6379',
      nodeId: 'node-a',
      publicUrl: 'https://a.example.com',
    });
    expect(loadConfig({ ...db, PUBLIC_URL: 'https://radio.example.com' }).cluster!.publicUrl).to.equal('https://radio.example.com');
    const generated = [loadConfig(db).cluster!.nodeId, loadConfig(db).cluster!.nodeId];
    expect(generated[0]).to.match(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/);
    expect(generated[0], 'a new id per start').to.not.equal(generated[1]);
    expect(() => loadConfig({ ...db, NODE_ID: 'bad id!' })).to.throw(ConfigError, /NODE_ID/);
    expect(() => loadConfig({ ...db, REDIS_URL: 'http://127.0.0.1:6379' })).to.throw(ConfigError, /REDIS_URL: must be a redis/);
  });

  it('README.md lists every setting the config reads', () => {
    const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
    for (const name of Object.keys(ENV_SCHEMA.shape)) expect(readme, name).to.include(`\`${name}\``);
  });
});
