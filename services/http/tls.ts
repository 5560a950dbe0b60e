// HTTPS for the service itself: the certificate it serves (given files, or a self-signed one made with Debian's openssl
// at first start and kept), and one port that answers both plain HTTP and TLS (docs/https.md).
//
// Browsers give the microphone only to secure contexts: `localhost`, or HTTPS. A performer on another computer of the
// LAN needs HTTPS, so the service offers it on its own port without a proxy: the first byte of a connection says
// which (22, a TLS handshake record, or an HTTP method's letter).
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { runOpenssl } from '../../pipelines/ffmpeg/index.ts';
import type { Log } from '../../pipelines/log.ts';

export type TlsConfig =
  | { mode: 'off' }
  | { mode: 'files'; certFile: string; keyFile: string }
  /** Made at first start in `dir` and kept; made again when a name this machine answers to is not in it, or it is near its end. */
  | { mode: 'self-signed'; dir: string; names: string[] };

export interface TlsIdentity {
  cert: Buffer;
  key: Buffer;
  source: 'files' | 'self-signed';
  certFile: string;
  /** SHA-256 fingerprint as browsers show it (AB:CD:…), to check before trusting it. */
  fingerprint256: string;
  /** The names and addresses it is valid for. */
  names: string[];
  validTo: Date;
}

const SELF_SIGNED_DAYS = 397;
/** A kept certificate closer than this to its end is made again. */
const RENEW_BEFORE_MS = 30 * 86_400_000;
const OPENSSL_TIMEOUT_MS = 30_000;

/** The names a self-signed certificate covers: this machine's, its addresses, and those the configuration names. */
export function machineNames(extra: readonly string[]): string[] {
  const names = new Set<string>(['localhost', '127.0.0.1', '::1']);
  const host = os.hostname();
  if (host) names.add(host.toLowerCase());
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      // Link-local IPv6 needs a zone that no URL a user types carries.
      if (a.family === 'IPv6' && /^fe80:/i.test(a.address)) continue;
      names.add(a.address.toLowerCase());
    }
  }
  for (const n of extra) if (n) names.add(n.toLowerCase());
  return [...names];
}

function covers(cert: crypto.X509Certificate, name: string): boolean {
  return net.isIP(name) ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined;
}

function describe(cert: crypto.X509Certificate): { names: string[]; validTo: Date } {
  const names = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .map((s) => s.replace(/^(DNS|IP Address):/, ''))
    .filter(Boolean);
  return { names, validTo: new Date(cert.validTo) };
}

/** The certificate to serve, or null for plain HTTP only. Throws on unreadable or mismatched files. */
export async function loadTls(config: TlsConfig, log: Log): Promise<TlsIdentity | null> {
  if (config.mode === 'off') return null;
  if (config.mode === 'files') {
    const [cert, key] = await Promise.all([fs.readFile(config.certFile), fs.readFile(config.keyFile)]);
    return identity(cert, key, 'files', config.certFile);
  }
  const certFile = path.join(config.dir, 'cert.pem');
  const keyFile = path.join(config.dir, 'key.pem');
  const kept = await Promise.all([fs.readFile(certFile), fs.readFile(keyFile)]).catch(() => null);
  if (kept) {
    try {
      const x = new crypto.X509Certificate(kept[0]);
      const missing = config.names.filter((n) => !covers(x, n));
      const ending = new Date(x.validTo).getTime() - Date.now() < RENEW_BEFORE_MS;
      if (missing.length === 0 && !ending) return identity(kept[0], kept[1], 'self-signed', certFile);
      log.info('making the self-signed certificate again', { missing, ending });
    } catch (err) {
      log.warn('the kept self-signed certificate is unreadable; making a new one', { error: String(err) });
    }
  }
  try {
    await makeSelfSigned(config.dir, config.names, log);
  } catch (err) {
    log.warn('no HTTPS: could not make a self-signed certificate (is openssl installed?); serving plain HTTP only', { error: String(err) });
    return null;
  }
  const [cert, key] = await Promise.all([fs.readFile(certFile), fs.readFile(keyFile)]);
  return identity(cert, key, 'self-signed', certFile);
}

function identity(cert: Buffer, key: Buffer, source: TlsIdentity['source'], certFile: string): TlsIdentity {
  const x = new crypto.X509Certificate(cert);
  if (!x.checkPrivateKey(crypto.createPrivateKey(key))) throw new Error(`${certFile}: the key does not match the certificate`);
  return { cert, key, source, certFile, fingerprint256: x.fingerprint256, ...describe(x) };
}

/** openssl writes beside the final files; they are renamed into place, so a concurrent start never reads half a pair. */
async function makeSelfSigned(dir: string, names: readonly string[], log: Log): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const tmpCert = path.join(dir, `.cert-${tag}.pem`);
  const tmpKey = path.join(dir, `.key-${tag}.pem`);
  const san = names.map((n) => (net.isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  try {
    await runOpenssl({
      args: [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', tmpKey, '-out', tmpCert, '-days', String(SELF_SIGNED_DAYS),
        '-subj', `/O=stage-radio/CN=${names.find((n) => !net.isIP(n) && n !== 'localhost') ?? 'localhost'}`,
        '-addext', `subjectAltName=${san}`,
        '-addext', 'basicConstraints=critical,CA:FALSE',
        '-addext', 'keyUsage=critical,digitalSignature',
        '-addext', 'extendedKeyUsage=serverAuth',
      ],
      timeoutMs: OPENSSL_TIMEOUT_MS,
      log,
    });
    await fs.chmod(tmpKey, 0o600);
    // The key first: a reader that sees the new certificate then finds its key (and checks that they match).
    await fs.rename(tmpKey, path.join(dir, 'key.pem'));
    await fs.rename(tmpCert, path.join(dir, 'cert.pem'));
    log.info('made a self-signed certificate', { dir, names });
  } finally {
    await Promise.all([fs.rm(tmpCert, { force: true }), fs.rm(tmpKey, { force: true })]);
  }
}

/** A client that connects and sends nothing is dropped after this long (the HTTP server's own timeouts start later). */
const SNIFF_TIMEOUT_MS = 10_000;
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * Listens on one port for both plain HTTP and TLS, handing every connection to `httpServer` (Express and Socket.IO see
 * one server; `req.secure` says which). Without `identity` it is the HTTP server's own listen.
 */
export async function listenPlainAndTls(
  httpServer: http.Server,
  identity: TlsIdentity | null,
  opts: { port: number; host: string; backlog: number; log: Log },
): Promise<{ address: net.AddressInfo; close: () => Promise<void> }> {
  const listen = (server: net.Server) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, opts.backlog, () => {
        server.off('error', reject);
        resolve();
      });
    });
  if (!identity) {
    await listen(httpServer);
    return {
      address: httpServer.address() as net.AddressInfo,
      close: () =>
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        }),
    };
  }
  const tlsServer = tls.createServer({ cert: identity.cert, key: identity.key, ALPNProtocols: ['http/1.1'] });
  tlsServer.on('secureConnection', (socket) => httpServer.emit('connection', socket));
  tlsServer.on('tlsClientError', (err) => opts.log.debug('TLS handshake failed', { error: err.message }));
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
    socket.once('error', () => socket.destroy());
    socket.once('data', (first) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      (first[0] === TLS_HANDSHAKE_RECORD ? tlsServer : httpServer).emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  await listen(front);
  // The HTTP server itself never listens here, and Node starts its connection tracking (headersTimeout and
  // requestTimeout against slow clients, closeAllConnections) on its 'listening' event: start it now.
  httpServer.emit('listening');
  return {
    address: front.address() as net.AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        // Stops the tracking's timer and idle keep-alive connections ("not running" is expected: the front listened).
        httpServer.close(() => undefined);
        httpServer.closeAllConnections();
        for (const s of sockets) s.destroy();
      }),
  };
}
