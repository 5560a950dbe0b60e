// A Node Socket.IO client speaking the stage protocol, for tests that need no browser.
import { io, type Socket } from 'socket.io-client';
import type { Ack, RequestName, ResponseData } from '../../services/shared/protocol.ts';

export interface TestClient {
  socket: Socket;
  /** Sends a request and resolves with its ack (ok or not). */
  request<E extends RequestName>(event: E, payload: unknown): Promise<Ack<ResponseData[E]>>;
  /** Sends any event with any arguments and resolves with the ack, or null when none came within timeoutMs. */
  raw(event: string, args: unknown[], timeoutMs?: number): Promise<unknown>;
  close(): void;
}

export async function connectClient(baseUrl: string, namespace = '/stage'): Promise<TestClient> {
  const socket = io(`${baseUrl}${namespace}`, { transports: ['websocket'], reconnection: false, forceNew: true });
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
    request: (event, payload) => raw(event, [payload], 10_000) as Promise<Ack<ResponseData[typeof event]>>,
    raw,
    close: () => socket.close(),
  };
}
