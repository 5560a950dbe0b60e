// The signed header a node puts on a request it passes on to another (services/cluster/forward.ts): the receiving node
// trusts the client address in it only when the signature, keyed with the cluster's ADMIN_TOKEN, covers that node,
// address, method and URL.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { FORWARDED_HEADER, Forwarder, verifyForwarded } from '../../services/cluster/forward.ts';
import { createLogger } from '../../services/logger.ts';

describe('unit: cluster forwarding signature', () => {
  const secret = 'cluster-secret-0123456789abcdef';

  it('a passed-on request carries a header that verifies for that method and URL only, with the cluster key only', async () => {
    let seen: { header: string; method: string; url: string; body: string } | null = null;
    const owner = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen = { header: String(req.headers[FORWARDED_HEADER]), method: req.method!, url: req.url!, body };
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => owner.listen(0, '127.0.0.1', r));
    const forwarder = new Forwarder('node-a', secret, createLogger('error'));
    const entry = http.createServer((req, res) => void forwarder.forward(req, res, `http://127.0.0.1:${(owner.address() as AddressInfo).port}`, '198.51.100.7'));
    await new Promise<void>((r) => entry.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(entry.address() as AddressInfo).port}/whip/abcdef?x=1`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
      expect(res.status).to.equal(201);
      expect(await res.json()).to.deep.equal({ ok: true });
      const s = seen!;
      expect(s.body, 'the body as it came').to.equal('{"a":1}');
      expect(verifyForwarded(secret, s.header, s.method, s.url)).to.equal('198.51.100.7');
      expect(verifyForwarded('another-secret-0123456789abcdef', s.header, s.method, s.url), 'another key').to.equal(null);
      expect(verifyForwarded(secret, s.header, 'DELETE', s.url), 'another method').to.equal(null);
      expect(verifyForwarded(secret, s.header, s.method, '/whip/other1'), 'another URL').to.equal(null);
      expect(verifyForwarded(secret, s.header.replace('198.51.100.7', '198.51.100.8'), s.method, s.url), 'another client').to.equal(null);
      expect(verifyForwarded(secret, 'node-a 198.51.100.7', s.method, s.url), 'no signature').to.equal(null);
      expect(verifyForwarded(secret, undefined, s.method, s.url)).to.equal(null);
    } finally {
      forwarder.close();
      await new Promise((r) => entry.close(r));
      await new Promise((r) => owner.close(r));
    }
  });
});
