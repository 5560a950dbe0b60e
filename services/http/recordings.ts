// REST for the archive: list a stage's recordings, and download their files (a presigned redirect for S3, or a
// stream with Range support from the local store).
import path from 'node:path';
import express from 'express';
import type { Archiver } from '../archive/archiver.ts';
import type { ArchiveObject, Recording } from '../db/archive.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import { RequestError } from '../errors.ts';
import { recordingIdSchema, stageIdSchema } from '../shared/ids.ts';
import { downloadQuery, type RecordingFile, type RecordingList, type RecordingView } from '../shared/rest.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import { parseWith, wrap } from './util.ts';

/** The downloadable file an object is (its `file` parameter and kind), or null for segments and init sections. */
function downloadable(o: ArchiveObject): { file: string; kind: RecordingFile['kind'] } | null {
  switch (o.kind) {
    case 'segment':
    case 'init':
      return null;
    case 'track':
      return o.performerId ? { file: `track:${o.performerId}`, kind: 'track' } : null;
    default:
      return { file: o.kind, kind: o.kind };
  }
}

/** A download name: the stage, the broadcast's start, and what the file is. */
function downloadName(rec: Recording, o: ArchiveObject, displayName?: string): string {
  const stamp = rec.startedAt.toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const ext = path.posix.extname(o.key);
  const what = o.kind === 'track' ? `track-${(displayName ?? o.performerId ?? 'performer').replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40)}` : o.kind;
  return `${rec.stageId}-${stamp}-${what}${ext}`;
}

export function recordingsRouter(deps: { archiver: Archiver; stages: StageCatalog; db: Db; downloadTtlSeconds: number }): express.Router {
  const router = express.Router();
  const repo = deps.archiver.repo;
  const broadcasts = new BroadcastRepo(deps.db);

  const view = async (rec: Recording): Promise<RecordingView> => {
    const objects = await repo.objects(rec.id);
    const names = new Map((await broadcasts.listPerformers(rec.id)).map((p) => [p.performerId, p.displayName]));
    const segments = objects.filter((o) => o.kind === 'segment');
    const files: RecordingFile[] = [];
    for (const o of objects) {
      const d = downloadable(o);
      if (!d) continue;
      const { file, kind } = d;
      files.push({
        file,
        kind,
        key: o.key,
        size: o.size,
        sha256: o.sha256,
        durationSeconds: o.durationSeconds,
        state: o.state,
        ...(o.performerId ? { performerId: o.performerId, displayName: names.get(o.performerId) ?? o.performerId } : {}),
        url: `/api/recordings/${rec.id}/download?file=${encodeURIComponent(file)}`,
      });
    }
    return {
      id: rec.id,
      stageId: rec.stageId,
      status: rec.archiveStatus,
      error: rec.archiveError,
      startedAt: rec.startedAt.toISOString(),
      endedAt: rec.endedAt?.toISOString() ?? null,
      archivedAt: rec.archivedAt?.toISOString() ?? null,
      durationSeconds: rec.durationSeconds,
      segments: { count: segments.length, uploaded: segments.filter((o) => o.state === 'uploaded').length },
      files,
    };
  };

  router.get(
    '/stages/:id/recordings',
    wrap(async (req, res) => {
      const stageId = parseWith(stageIdSchema, req.params['id'], 'stage id');
      if (!(await deps.stages.record(stageId))) throw new RequestError('NOT_FOUND', 'no such stage');
      const recs = await repo.recordingsForStage(stageId);
      const body: RecordingList = { stageId, recordings: await Promise.all(recs.map(view)) };
      res.json(body);
    }),
  );

  router.get(
    '/recordings/:id',
    wrap(async (req, res) => {
      const id = parseWith(recordingIdSchema, req.params['id'], 'recording id');
      const rec = await repo.recording(id);
      if (!rec) throw new RequestError('NOT_FOUND', 'no such recording');
      res.json(await view(rec));
    }),
  );

  router.get(
    '/recordings/:id/download',
    wrap(async (req, res) => {
      const id = parseWith(recordingIdSchema, req.params['id'], 'recording id');
      const { file } = parseWith(downloadQuery, req.query, 'query');
      const rec = await repo.recording(id);
      if (!rec) throw new RequestError('NOT_FOUND', 'no such recording');
      const obj = (await repo.objects(id)).find((o) => downloadable(o)?.file === file);
      if (!obj) throw new RequestError('NOT_FOUND', `this recording has no file ${file}`);
      if (obj.state !== 'uploaded') throw new RequestError('INVALID_STATE', `${file} is not archived yet (${obj.state}); try again later`);
      const displayName = obj.performerId ? (await broadcasts.listPerformers(id)).find((p) => p.performerId === obj.performerId)?.displayName : undefined;
      const filename = downloadName(rec, obj, displayName);
      const store = deps.archiver.store;
      const url = await store.presignGet(obj.key, { ttlSeconds: deps.downloadTtlSeconds, filename, contentType: obj.contentType });
      if (url) {
        res.setHeader('Cache-Control', 'no-store');
        res.redirect(302, url);
        return;
      }
      const local = store.localPath(obj.key);
      if (!local) throw new RequestError('INTERNAL', 'the store can neither presign nor serve this file');
      res.setHeader('Cache-Control', 'private, max-age=3600');
      await new Promise<void>((resolve, reject) => {
        res.attachment(filename);
        res.sendFile(local, { acceptRanges: true, lastModified: true, headers: { 'Content-Type': obj.contentType } }, (err?: Error) => {
          if (!err) return resolve();
          const e = err as NodeJS.ErrnoException & { status?: number };
          if (res.headersSent) return resolve();
          // The error is JSON: drop what was set for the file (its type, the attachment name, its cache lifetime).
          for (const h of ['Content-Type', 'Content-Disposition', 'Cache-Control']) res.removeHeader(h);
          res.setHeader('Cache-Control', 'no-store');
          if (e.code === 'ENOENT' || e.status === 404) return reject(new RequestError('NOT_FOUND', 'the archived file is missing from the store'));
          if (e.status === 416) {
            res.status(416).setHeader('Content-Range', `bytes */${obj.size}`);
            return reject(new RequestError('BAD_REQUEST', 'the requested range is not satisfiable'));
          }
          reject(err);
        });
      });
    }),
  );

  return router;
}
