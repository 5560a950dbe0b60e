// Cluster mode (docs/cluster.md): requests about a stage that another node serves are passed on to that node: the
// stage's REST calls (reads of recordings excepted: the database answers them anywhere), its WHIP endpoint and its
// live HLS. Going on air and a WHIP publish place the stage first when nobody serves it yet. Socket.IO cannot be passed
// on this way: the namespaces answer WRONG_NODE with the owner's URL instead, and the pages follow it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { FORWARDED_HEADER } from '../cluster/forward.ts';
import { stageIdSchema } from '../shared/ids.ts';

export interface ClusterRouting {
  /** The base URL of the node that serves the stage when that is another node (placing it first when `place`), else null. */
  elsewhere(stageId: string, place: boolean): Promise<string | null>;
  /** Passes the request on to that node and its answer back; `client` is the client's address as seen here. */
  forward(req: IncomingMessage, res: ServerResponse, ownerUrl: string, client: string): Promise<void>;
  /** The client address of a request another node of the cluster passed on (a valid signature), else null. */
  forwardedFor(req: IncomingMessage): string | null;
}

const STAGE_PATH = /^\/(api\/stages|whip|live)\/([^/]+)(\/.*)?$/;

export function clusterRouting(cluster: ClusterRouting): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    // Passed on by another node: answered here, whatever this node thinks (no loops), and counted against the client's
    // address (rate limits), not the forwarding node's. A header that does not verify is ignored.
    const client = req.get(FORWARDED_HEADER) ? cluster.forwardedFor(req) : null;
    if (client !== null) {
      Object.defineProperty(req, 'ip', { value: client, configurable: true });
      return next();
    }
    const m = STAGE_PATH.exec(req.path);
    if (!m) return next();
    const [, kind, id = '', sub = ''] = m;
    if (!stageIdSchema.safeParse(id).success) return next();
    // The stage's record and its recordings come from the database: any node answers.
    if (kind === 'api/stages' && (sub === '' || sub === '/' || sub.startsWith('/recordings'))) return next();
    const place = req.method === 'POST' && ((kind === 'api/stages' && sub === '/start') || (kind === 'whip' && (sub === '' || sub === '/')));
    cluster.elsewhere(id, place).then(
      (url) => (url ? cluster.forward(req, res, url, req.ip ?? req.socket.remoteAddress ?? 'unknown') : next()),
      (err: unknown) => next(err),
    );
  };
}
