// A network partition between one client and a server, on loopback: the client connects to this TCP relay instead of
// the server. cut() black-holes the path as a partition does: nothing passes either way and nothing is closed, so the
// client learns it only by its own timeouts, and new connections are accepted and hang. heal() ends the connections
// held through the cut (as TCP's retransmission timeouts end them in a partition of that length) and lets new ones
// through again.
import net from 'node:net';

export class PartitionableLink {
  readonly #server: net.Server;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket | null; cutAt: boolean }>();
  #cut = false;
  #port = 0;

  private constructor(private readonly target: { host: string; port: number }) {
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Relays 127.0.0.1:<a free port> to `target`. */
  static async open(target: { host: string; port: number }): Promise<PartitionableLink> {
    const link = new PartitionableLink(target);
    await new Promise<void>((resolve, reject) => {
      link.#server.once('error', reject);
      link.#server.listen(0, '127.0.0.1', () => resolve());
    });
    link.#port = (link.#server.address() as net.AddressInfo).port;
    return link;
  }

  get port(): number {
    return this.#port;
  }

  /** Whether the path is cut now. */
  get isCut(): boolean {
    return this.#cut;
  }

  #accept(client: net.Socket): void {
    const pair = { client, upstream: null as net.Socket | null, cutAt: this.#cut };
    this.#pairs.add(pair);
    const drop = () => {
      this.#pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on('error', drop).on('close', drop);
    if (this.#cut) return; // accepted, and never answered: the far side is unreachable
    const upstream = net.connect(this.target.port, this.target.host);
    pair.upstream = upstream;
    upstream.on('error', drop).on('close', drop);
    // Data is passed only while the path is up; what is sent during a cut is lost with the connection at heal().
    client.on('data', (d) => {
      if (!this.#cut) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!this.#cut) client.write(d);
    });
  }

  /** Cuts the path: from now on nothing passes, and nothing is closed. */
  cut(): void {
    this.#cut = true;
    for (const p of this.#pairs) p.cutAt = true;
  }

  /** Heals the path: the connections held through the cut are ended (the client connects again); new ones pass. */
  heal(): void {
    this.#cut = false;
    for (const p of [...this.#pairs]) {
      if (!p.cutAt) continue;
      this.#pairs.delete(p);
      p.client.destroy();
      p.upstream?.destroy();
    }
  }

  async close(): Promise<void> {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.#pairs.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
