// The REST API's contract as an OpenAPI 3.1 document, served at GET /api/openapi.json. Every body, parameter and
// response is a zod schema of services/shared/rest.ts (the contract, defined once): the routes parse with them and
// send their derived types, and this document is built from them. The test suite validates every REST response it
// sees against this document (test/support/openapi.ts).
import { callDetailSchema, callIdSchema, callListSchema, callRateBody, callRateSchema, callViewSchema } from '../shared/calls.ts';
import { z } from 'zod';
import { ERROR_CODES, errorBodySchema, type ErrorCode } from '../shared/errors.ts';
import { recordingIdSchema, stageIdSchema } from '../shared/ids.ts';
import { performerInfoSchema } from '../shared/model.ts';
import {
  createStageBody,
  downloadQuery,
  emptyBody,
  encoderListSchema,
  nodeListSchema,
  eventPostedSchema,
  healthSchema,
  healthUnavailableSchema,
  recordingFileSchema,
  recordingListSchema,
  recordingViewSchema,
  stageCreatedSchema,
  stageListSchema,
  stageTransitionSchema,
  stageViewSchema,
} from '../shared/rest.ts';
import { EVENT_BURST, EVENTS_PER_SECOND, performerEventSchema, timelineEventSchema, timelineSnapshotSchema } from '../shared/timeline.ts';

const errorBody = (codes: readonly [ErrorCode, ...ErrorCode[]]) =>
  z.object({ ok: z.literal(false), error: errorBodySchema.extend({ code: z.enum(codes) }) });

// ---- The document ----

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const resRef = (name: string) => ({ $ref: `#/components/responses/${name}` });

function componentSchemas(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, { io, uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'throw' }).schemas;
  return Object.fromEntries(
    Object.entries(out).map(([id, s]) => {
      const { $schema: _s, $id: _i, ...rest } = s as Json;
      return [id, rest];
    }),
  );
}

function paramSchema(schema: z.ZodType): Json {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Json;
  return rest;
}

const json = (schema: Json) => ({ content: { 'application/json': { schema } } });
const errorResponse = (description: string, schema: string, headers?: Json) => ({ description, ...(headers ? { headers } : {}), ...json(ref(schema)) });

/** What a write can also answer when the server protects itself: too large, too fast, or not able to now. */
const WRITE_ERRORS = { '413': resRef('PayloadTooLarge'), '429': resRef('RateLimited'), '503': resRef('Unavailable') };

const stageIdParam = { name: 'id', in: 'path', required: true, description: 'The stage id.', schema: paramSchema(stageIdSchema) };
const recordingIdParam = { name: 'id', in: 'path', required: true, description: 'The recording (broadcast) id.', schema: paramSchema(recordingIdSchema) };
const STAGE_WRITE_SECURITY = [{ adminToken: [] }, { performerKey: [] }];

function transition(action: 'start' | 'stop'): Json {
  return {
    tags: ['stages'],
    operationId: `${action}Stage`,
    summary: action === 'start' ? 'Go on air' : 'Go off air',
    description:
      action === 'start'
        ? 'The mix starts (with or without performers) and HLS appears. Again while live: `changed: false`. An ended stage cannot start again (409).'
        : 'The playlist gets EXT-X-ENDLIST and the stage ends; its archive is finalized. Again: `changed: false`. Not on air: 409.',
    security: STAGE_WRITE_SECURITY,
    parameters: [stageIdParam],
    requestBody: { required: false, description: 'Empty, or `{}`.', ...json(ref('EmptyRequest')) },
    responses: {
      '200': { description: 'The stage after the transition.', ...json(ref('StageTransition')) },
      '400': resRef('BadRequest'),
      '401': resRef('Unauthorized'),
      '404': resRef('NotFound'),
      '409': resRef('InvalidState'),
      '421': resRef('WrongNode'),
      ...WRITE_ERRORS,
      '500': resRef('Internal'),
    },
  };
}

/** The archive's content types (services/archive/archiver.ts CONTENT_TYPES), one per `file`. */
const DOWNLOAD_TYPES = ['audio/mp4', 'audio/ogg', 'application/vnd.apple.mpegurl', 'application/json', 'text/vtt'];
const downloadContent = Object.fromEntries(DOWNLOAD_TYPES.map((t) => [t, {}]));

function buildDocument(): Json {
  const responses = componentSchemas(
    {
      Performer: performerInfoSchema,
      StageCreated: stageCreatedSchema,
      StageView: stageViewSchema,
      StageList: stageListSchema,
      StageTransition: stageTransitionSchema,
      TimelineEvent: timelineEventSchema,
      EventPosted: eventPostedSchema,
      TimelineSnapshot: timelineSnapshotSchema,
      RecordingFile: recordingFileSchema,
      Recording: recordingViewSchema,
      RecordingList: recordingListSchema,
      Call: callViewSchema,
      CallList: callListSchema,
      CallDetail: callDetailSchema,
      EncoderList: encoderListSchema,
      NodeList: nodeListSchema,
      CallRateSet: z.object({ stageId: stageIdSchema, rate: callRateSchema.nullable() }),
      Health: healthSchema,
      HealthUnavailable: healthUnavailableSchema,
      Error: errorBody(ERROR_CODES),
      BadRequestError: errorBody(['BAD_REQUEST']),
      UnauthorizedError: errorBody(['UNAUTHORIZED']),
      NotFoundError: errorBody(['NOT_FOUND']),
      InvalidStateError: errorBody(['INVALID_STATE']),
      RateLimitedError: errorBody(['RATE_LIMITED']),
      UnavailableError: errorBody(['UNAVAILABLE']),
      WrongNodeError: errorBody(['WRONG_NODE']),
      InternalError: errorBody(['INTERNAL']),
    },
    'output',
  );
  const requests = componentSchemas(
    { CreateStageRequest: createStageBody, PerformerEventRequest: performerEventSchema, EmptyRequest: emptyBody, CallRateRequest: callRateBody },
    'input',
  );

  return {
    openapi: '3.1.0',
    info: {
      title: 'stage-radio REST API',
      version: '1',
      description:
        'Stages, going on and off air, the timeline, and the archive. Every response is JSON unless said otherwise, ' +
        'with `Cache-Control: no-store`. Errors are `{ ok: false, error: { code, message } }` with the matching HTTP ' +
        'status. Any other path or method under /api answers 404 with code NOT_FOUND. Request bodies are JSON of at ' +
        'most 16 kB; text fields also refuse control characters (and `<` `>` in timeline text), which JSON Schema ' +
        'does not express. Live HLS (/live/…) and the pages are not part of this API.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'stages', description: 'Stages and going on and off air.' },
      { name: 'timeline', description: 'Chapters, tracks and markers on a broadcast’s programme clock (docs/timeline.md).' },
      { name: 'recordings', description: 'The archive of every broadcast (docs/archive.md).' },
      { name: 'calls', description: 'Call-in: listeners on air, their record and bill (docs/calls.md).' },
      { name: 'operations', description: 'Health, metrics and this document.' },
    ],
    paths: {
      '/api/stages': {
        get: {
          tags: ['stages'],
          operationId: 'listStages',
          summary: 'Every stage, newest first (the admin page’s list)',
          security: [{ adminToken: [] }],
          responses: {
            '200': { description: 'The stages.', ...json(ref('StageList')) },
            '401': resRef('Unauthorized'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
        post: {
          tags: ['stages'],
          operationId: 'createStage',
          summary: 'Create a stage',
          security: [{ adminToken: [] }],
          requestBody: { required: true, ...json(ref('CreateStageRequest')) },
          responses: {
            '201': {
              description: 'The new stage, with its performer key (shown only here).',
              headers: { Location: { required: true, description: '/api/stages/{id}', schema: { type: 'string' } } },
              ...json(ref('StageCreated')),
            },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            ...WRITE_ERRORS,
            '500': resRef('Internal'),
          },
        },
      },
      '/api/nodes': {
        get: {
          tags: ['operations'],
          operationId: 'listNodes',
          summary: 'The nodes of the service and their load (docs/cluster.md)',
          security: [{ adminToken: [] }],
          responses: {
            '200': { description: 'Every live node; without REDIS_URL, this one.', ...json(ref('NodeList')) },
            '401': resRef('Unauthorized'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}': {
        get: {
          tags: ['stages'],
          operationId: 'getStage',
          summary: 'A stage: status, performers and URLs',
          parameters: [stageIdParam],
          responses: {
            '200': { description: 'The stage.', ...json(ref('StageView')) },
            '400': resRef('BadRequest'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}/start': { post: transition('start') },
      '/api/stages/{id}/stop': { post: transition('stop') },
      '/api/stages/{id}/events': {
        post: {
          tags: ['timeline'],
          operationId: 'postEvent',
          summary: 'Mark a chapter, track or marker on air',
          description: `Placed at the programme clock’s "now". Only while the stage is on air (409 otherwise). Per stage, REST and the performers’ Socket.IO postEvent share one budget: ${EVENT_BURST} in a burst, then ${EVENTS_PER_SECOND} a second (429 with Retry-After).`,
          security: STAGE_WRITE_SECURITY,
          parameters: [stageIdParam],
          requestBody: { required: true, ...json(ref('PerformerEventRequest')) },
          responses: {
            '201': { description: 'The event as listeners get it.', ...json(ref('EventPosted')) },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            '404': resRef('NotFound'),
            '409': resRef('InvalidState'),
            ...WRITE_ERRORS,
            '500': resRef('Internal'),
          },
        },
        get: {
          tags: ['timeline'],
          operationId: 'listEvents',
          summary: 'The on-air (or last) broadcast’s events',
          parameters: [stageIdParam],
          responses: {
            '200': { description: 'The timeline.', ...json(ref('TimelineSnapshot')) },
            '400': resRef('BadRequest'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}/recordings': {
        get: {
          tags: ['recordings'],
          operationId: 'listRecordings',
          summary: 'A stage’s archives, newest first',
          parameters: [stageIdParam],
          responses: {
            '200': { description: 'The recordings.', ...json(ref('RecordingList')) },
            '400': resRef('BadRequest'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}/calls': {
        get: {
          tags: ['calls'],
          operationId: 'listCalls',
          summary: 'A stage’s calls, newest first',
          description: 'Waiting, on air and over, with their status, minutes and bill. The admin token or the stage’s performer key.',
          security: STAGE_WRITE_SECURITY,
          parameters: [stageIdParam],
          responses: {
            '200': { description: 'The calls.', ...json(ref('CallList')) },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}/encoders': {
        get: {
          tags: ['stages'],
          operationId: 'listEncoders',
          summary: 'The stage’s WHIP publishers (OBS…), their state and level',
          description: 'What the performer page’s “Use OBS or another encoder” panel shows (docs/whip.md). The admin token or the stage’s performer key.',
          security: STAGE_WRITE_SECURITY,
          parameters: [stageIdParam],
          responses: {
            '200': { description: 'The encoders now.', ...json(ref('EncoderList')) },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/stages/{id}/call-rate': {
        put: {
          tags: ['calls'],
          operationId: 'setCallRate',
          summary: 'Set (or clear) a stage’s per-minute call rate',
          description: 'Calls taken from now on are billed at it (each call keeps the rate it was requested under). `{"rate": null}`: calls are free.',
          security: [{ adminToken: [] }],
          parameters: [stageIdParam],
          requestBody: { required: true, ...json(ref('CallRateRequest')) },
          responses: {
            '200': { description: 'The stage’s rate now.', ...json(ref('CallRateSet')) },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            '404': resRef('NotFound'),
            ...WRITE_ERRORS,
            '500': resRef('Internal'),
          },
        },
      },
      '/api/calls/{id}': {
        get: {
          tags: ['calls'],
          operationId: 'getCall',
          summary: 'One call with its events',
          description: 'call_request, then call_accepted / call_declined / call_cancelled / call_expired, call_connected, one call_tick per started minute, call_end. The admin token or the performer key of the call’s stage.',
          security: STAGE_WRITE_SECURITY,
          parameters: [{ name: 'id', in: 'path', required: true, description: 'The call id.', schema: paramSchema(callIdSchema) }],
          responses: {
            '200': { description: 'The call.', ...json(ref('CallDetail')) },
            '400': resRef('BadRequest'),
            '401': resRef('Unauthorized'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/recordings/{id}': {
        get: {
          tags: ['recordings'],
          operationId: 'getRecording',
          summary: 'One archive',
          parameters: [recordingIdParam],
          responses: {
            '200': { description: 'The recording.', ...json(ref('Recording')) },
            '400': resRef('BadRequest'),
            '404': resRef('NotFound'),
            '503': resRef('Unavailable'),
            '500': resRef('Internal'),
          },
        },
      },
      '/api/recordings/{id}/download': {
        get: {
          tags: ['recordings'],
          operationId: 'downloadRecordingFile',
          summary: 'Download one file of an archive',
          description:
            'A 302 to a short-lived presigned URL when the store is S3; the file itself, with Range support, from the local store. ' +
            'Only once the file is uploaded (409 before).',
          parameters: [
            recordingIdParam,
            { name: 'file', in: 'query', required: true, description: 'Which file: audio, playlist, manifest, timeline, chapters or track:<performerId>. No other query parameter is accepted.', schema: (paramSchema(downloadQuery) as { properties: Record<string, Json> }).properties['file'] },
            { name: 'Range', in: 'header', required: false, description: 'A byte range (local store).', schema: { type: 'string' } },
          ],
          responses: {
            '200': {
              description: 'The file (local store), as an attachment.',
              headers: { 'Content-Disposition': { required: true, schema: { type: 'string' } }, 'Accept-Ranges': { schema: { type: 'string' } } },
              content: downloadContent,
            },
            '206': {
              description: 'The requested byte range.',
              headers: { 'Content-Range': { required: true, schema: { type: 'string' } } },
              content: downloadContent,
            },
            '302': {
              description: 'Redirect to a presigned S3 URL, valid ARCHIVE_DOWNLOAD_TTL_SECONDS.',
              headers: { Location: { required: true, schema: { type: 'string', format: 'uri' } } },
            },
            '304': { description: 'Not modified (a conditional request).' },
            '400': resRef('BadRequest'),
            '404': resRef('NotFound'),
            '409': resRef('InvalidState'),
            '503': resRef('Unavailable'),
            '416': {
              description: 'The range is not satisfiable.',
              headers: { 'Content-Range': { required: true, description: 'bytes */<size>', schema: { type: 'string' } } },
              ...json(ref('BadRequestError')),
            },
            '500': resRef('Internal'),
          },
        },
      },
      '/api/openapi.json': {
        get: {
          tags: ['operations'],
          operationId: 'getOpenApi',
          summary: 'This document',
          responses: { '200': { description: 'The OpenAPI 3.1 document.', ...json({ type: 'object', properties: { openapi: { const: '3.1.0' }, info: { type: 'object' }, paths: { type: 'object' } }, required: ['openapi', 'info', 'paths'] }) } },
        },
      },
      '/healthz': {
        get: {
          tags: ['operations'],
          operationId: 'health',
          summary: 'Health',
          description:
            'ok; degraded (the database does not answer, writes are held for it, or something failed in the last hour: `problems`; live media goes on); down (no media worker) or draining (shutting down): 503.',
          responses: {
            '200': { description: 'ok or degraded.', ...json(ref('Health')) },
            '503': { description: 'down or draining.', ...json(ref('HealthUnavailable')) },
          },
        },
      },
      '/metrics': {
        get: {
          tags: ['operations'],
          operationId: 'metrics',
          summary: 'Prometheus metrics',
          security: [{ adminToken: [] }],
          responses: {
            '200': { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } }, 'application/openmetrics-text': { schema: { type: 'string' } } } },
            '401': resRef('Unauthorized'),
            '500': resRef('Internal'),
          },
        },
      },
    },
    components: {
      schemas: { ...responses, ...requests },
      responses: {
        BadRequest: errorResponse('Invalid input: the message says what.', 'BadRequestError'),
        Unauthorized: errorResponse('No token, or a wrong one.', 'UnauthorizedError', {
          'WWW-Authenticate': { description: 'Bearer', schema: { type: 'string' } },
        }),
        NotFound: errorResponse('No such thing.', 'NotFoundError'),
        InvalidState: errorResponse('Not possible in the current state (not on air, ended, not archived yet).', 'InvalidStateError'),
        PayloadTooLarge: errorResponse('The request body is larger than 16 kB.', 'Error'),
        RateLimited: errorResponse('Too many requests; slow down.', 'RateLimitedError', {
          'Retry-After': { description: 'Seconds to wait, when known.', schema: { type: 'string' } },
        }),
        Unavailable: errorResponse('The server cannot serve this now (the database is unreachable, overloaded, or shutting down); may carry Retry-After.', 'UnavailableError', {
          'Retry-After': { description: 'Seconds to wait.', schema: { type: 'string' } },
        }),
        Internal: errorResponse('An unexpected error (logged).', 'InternalError'),
        WrongNode: errorResponse('Cluster mode: another node serves this stage (`ownerUrl`); requests normally reach it through any node, this answers only a race.', 'WrongNodeError'),
      },
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN.' },
        performerKey: { type: 'http', scheme: 'bearer', description: 'The stage’s performer key (from createStage).' },
      },
    },
  };
}

let cached: { doc: Json; text: string } | undefined;

/** The document (built once, on first use). */
export function openApiDocument(): Json {
  cached ??= (() => {
    const doc = buildDocument();
    return { doc, text: JSON.stringify(doc) };
  })();
  return JSON.parse(cached.text) as Json;
}

/** The document as JSON text, for the route. */
export function openApiJson(): string {
  openApiDocument();
  return cached!.text;
}
