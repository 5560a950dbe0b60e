// REST for the archive: list a stage's recordings, and download their files (a presigned redirect for S3, or a
// stream with Range support from the local store).
import path from 'node:path';
import express from 'express';
import { z } from 'zod';
import type { Archiver } from '../archive/archiver.ts';
import type { ArchiveObject, Recording } from '../db/archive.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import { RequestError } from '../sfu/errors.ts';
import { stageIdSchema } from '../shared/protocol.ts';
import type { StageService } from '../stages.ts';
import { parseWith, wrap } from './util.ts';

export const recordingIdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a recording id (a UUID)');
export const downloadQuery = z.strictObject({
  file: z.string().regex(/^(audio|playlist|manifest|timeline|chapters|track:[A-Za-z0-9_-]{1,128})$/, 'must be audio, playlist, manifest, timeline, chapters or track:<performerId>'),
});

export interface RecordingFile {
  /** The `file` parameter of the download route. */
  file: string;
  kind: string;
  key: string;
  size: number;
  sha256: string;
  durationSeconds: number | null;
  state: string;
  performerId?: string;
  displayName?: string;
  url: string;
}

export interface RecordingView {
  id: string;
  stageId: string;
  status: Recording['archiveStatus'];
  error: string | null;
  startedAt: string;
  endedAt: string | null;
  archivedAt: string | null;
  durationSeconds: number | null;
  segments: { count: number; uploaded: number };
  files: RecordingFile[];
}

function fileParam(o: ArchiveObject): string | null {
  if (o.kind === 'audio' || o.kind === 'playlist' || o.kind === 'manifest' || o.kind === 'timeline' || o.kind === 'chapters') return o.kind;
  if (o.kind === 'track' && o.performerId) return `track:${o.performerId}`;
  return null;
}

/** A download name: the stage, the broadcast's start, and what the file is. */
function downloadName(rec: Recording, o: ArchiveObject, displayName?: string): string {
  const stamp = rec.startedAt.toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const ext = path.posix.extname(o.key);
  const what = o.kind === 'track' ? `track-${(displayName ?? o.performerId ?? 'performer').replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40)}` : o.kind;
  return `${rec.stageId}-${stamp}-${what}${ext}`;
}

export function recordingsRouter(deps: { archiver: Archiver; stages: StageService; db: Db; downloadTtlSeconds: number }): express.Router {
  const router = express.Router();
  const repo = deps.archiver.repo;
  const broadcasts = new BroadcastRepo(deps.db);

  const view = async (rec: Recording): Promise<RecordingView> => {
    const objects = await repo.objects(rec.id);
    const names = new Map((await broadcasts.listPerformers(rec.id)).map((p) => [p.performerId, p.displayName]));
    const segments = objects.filter((o) => o.kind === 'segment');
    const files: RecordingFile[] = [];
    for (const o of objects) {
      const file = fileParam(o);
      if (!file) continue;
      files.push({
        file,
        kind: o.kind,
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
      if (!(await deps.stages.view(stageId))) throw new RequestError('NOT_FOUND', 'no such stage');
      const recs = await repo.recordingsForStage(stageId);
      res.json({ stageId, recordings: await Promise.all(recs.map(view)) });
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
      const obj = (await repo.objects(id)).find((o) => fileParam(o) === file);
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
