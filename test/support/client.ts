// A Node Socket.IO client speaking a namespace's protocol (typed by its contract), for tests that need no browser.
import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import type { NamespaceContract, RequestName, ResponseData } from '../../services/shared/contract.ts';
import type { Ack } from '../../services/shared/errors.ts';
import type { StageContract } from '../../services/shared/stage.ts';

export interface TestClient<C extends NamespaceContract = StageContract> {
  socket: Socket;
  /** Sends a request and resolves with its ack (ok or not). The payload is not typed: tests send bad ones too. */
  request<E extends RequestName<C>>(event: E, payload: unknown): Promise<Ack<ResponseData<C, E>>>;
  /** Sends any event with any arguments and resolves with the ack, or null when none came within timeoutMs. */
  raw(event: string, args: unknown[], timeoutMs?: number): Promise<unknown>;
  close(): void;
}

/** `forwardedFor`: the client address the server sees (X-Forwarded-For, honoured from loopback). */
export async function connectClient<C extends NamespaceContract = StageContract>(baseUrl: string, namespace: string = '/stage', opts: { forwardedFor?: string } = {}): Promise<TestClient<C>> {
  const socket = io(`${baseUrl}${namespace}`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ...(opts.forwardedFor ? { extraHeaders: { 'x-forwarded-for': opts.forwardedFor } } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const raw = (event: string, args: unknown[], timeoutMs = 3000) =>
    new Promise<unknown>((resolve) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      socket.emit(event, ...args, (res: unknown) => {
        clearTimeout(t);
        resolve(res);
      });
    });
  return {
    socket,
    request: <E extends RequestName<C>>(event: E, payload: unknown) => raw(event, [payload], 10_000) as Promise<Ack<ResponseData<C, E>>>,
    raw,
    close: () => socket.close(),
  };
}

/**
 * What a show does while the database is away: the host posts `chapters` chapters, `everyMs` apart, and a listener
 * comments; each must be acknowledged at once (held for the database, not refused). Returns the events' ids.
 */
export async function postWhileDbDown(
  host: TestClient,
  listener: TestClient<NamespaceContract>,
  o: { chapters: number; everyMs: number; title: (i: number) => string; comment: string },
): Promise<string[]> {
  const posted: string[] = [];
  for (let i = 0; i < o.chapters; i++) {
    const ack = await host.request('postEvent', { type: 'chapter', title: o.title(i) });
    expect(ack.ok, JSON.stringify(ack)).to.equal(true);
    if (ack.ok) posted.push(ack.data.event.id);
    await new Promise((r) => setTimeout(r, o.everyMs));
  }
  const comment = (await listener.raw('comment', [{ text: o.comment, name: 'Lis' }])) as { ok: boolean; data?: { event: { id: string } } };
  expect(comment.ok, JSON.stringify(comment)).to.equal(true);
  posted.push(comment.data!.event.id);
  return posted;
}
