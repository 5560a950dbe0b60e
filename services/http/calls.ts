// REST for call-in: a stage's calls and one call with its events (the admin token or the stage's performer key), and a
// stage's per-minute rate (the admin). The database holds the record; calls it does not have yet (a write held
// through an outage) are shown as the desk has them.
import express, { type Request, type Response } from 'express';
import type { CallDesk } from '../calls/desk.ts';
import { CallRepo, callView } from '../db/calls.ts';
import type { Db } from '../db/db.ts';
import { RequestError } from '../errors.ts';
import { callIdSchema, callRateBody, type CallDetail, type CallView } from '../shared/calls.ts';
import { stageIdSchema } from '../shared/ids.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import { parseWith, wrap } from './util.ts';

export function callsRouter(deps: {
  calls: CallDesk;
  stages: StageCatalog;
  db: Db;
  /** Throws unless the request carries the admin token or the stage's performer key; true for the admin. */
  authorizeStage: (req: Request, res: Response, stageId: string) => Promise<boolean>;
  requireAdmin: express.RequestHandler;
}): express.Router {
  const router = express.Router();
  const repo = new CallRepo(deps.db);

  router.get(
    '/stages/:id/calls',
    wrap(async (req, res) => {
      const stageId = parseWith(stageIdSchema, req.params['id'], 'stage id');
      const admin = await deps.authorizeStage(req, res, stageId);
      if (admin && !(await deps.stages.record(stageId))) throw new RequestError('NOT_FOUND', 'no such stage');
      const stored = await repo.listForStage(stageId);
      const byId = new Map<string, CallView>(stored.map((c) => [c.id, callView(c)]));
      for (const c of deps.calls.pending(stageId)) byId.set(c.id, c);
      const calls = [...byId.values()].sort((a, b) => b.requestedAt.localeCompare(a.requestedAt)).slice(0, 200);
      res.json({ stageId, calls });
    }),
  );

  router.get(
    '/calls/:id',
    wrap(async (req, res) => {
      const id = parseWith(callIdSchema, req.params['id'], 'call id');
      const live = deps.calls.pending().find((c) => c.id === id) ?? null;
      const stored = await repo.get(id);
      const call = live ?? (stored ? callView(stored) : null);
      // Unknown calls answer 404 only to those who may see calls at all: the key decides, not the id.
      if (!call) {
        if (!req.get('authorization')) throw new RequestError('UNAUTHORIZED', 'send the admin token or the performer key as a Bearer token');
        throw new RequestError('NOT_FOUND', 'no such call');
      }
      await deps.authorizeStage(req, res, call.stageId);
      const body: CallDetail = { ...call, events: await repo.events(id) };
      res.json(body);
    }),
  );

  router.put(
    '/stages/:id/call-rate',
    deps.requireAdmin,
    wrap(async (req, res) => {
      const stageId = parseWith(stageIdSchema, req.params['id'], 'stage id');
      const { rate } = parseWith(callRateBody, req.body ?? {}, 'body');
      if (!(await repo.setRate(stageId, rate))) throw new RequestError('NOT_FOUND', 'no such stage');
      res.json({ stageId, rate });
    }),
  );

  return router;
}
