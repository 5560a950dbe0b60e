// A Node Socket.IO client speaking a namespace's protocol (typed by its contract), for tests that need no browser.
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

export async function connectClient<C extends NamespaceContract = StageContract>(baseUrl: string, namespace: string = '/stage'): Promise<TestClient<C>> {
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
    request: <E extends RequestName<C>>(event: E, payload: unknown) => raw(event, [payload], 10_000) as Promise<Ack<ResponseData<C, E>>>,
    raw,
    close: () => socket.close(),
  };
}
