// The REST contract check: every response the tests get from the app's REST API is validated against the OpenAPI
// document (services/http/openapi.ts). As a mocha root-hook plugin (.mocharc.json `require`), it wraps
// globalThis.fetch for the whole run, and fails the run after all tests if any response did not match.
// Tests can also check one response directly with expectConforms().
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { openApiDocument } from '../../services/http/openapi.ts';

type Json = Record<string, unknown>;

/** One response from the app, as the checker sees it. */
export interface Observed {
  method: string;
  /** The URL the response came from (after any followed redirect). */
  url: string;
  status: number;
  headers: Headers | Record<string, string>;
  /** The parsed JSON body, when the response is JSON and was read. */
  body?: unknown;
  /** The body could not be read (the connection dropped): its schema is not checked. */
  unread?: boolean;
}

export interface CheckResult {
  /** `METHOD /template` of the operation matched, or null. */
  operation: string | null;
  violations: string[];
  /** An undocumented route under /api that got the router's documented 404 fallback. */
  fallback: boolean;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const ROOT_ID = 'urn:stage-radio:openapi';
const APP_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Paths the contract covers: the REST API, health and metrics (not /live HLS, pages or assets). */
export function isRestPath(pathname: string): boolean {
  return pathname === '/api' || pathname.startsWith('/api/') || pathname === '/healthz' || pathname === '/metrics';
}

function mediaType(contentType: string | null): string | null {
  return contentType ? (contentType.split(';')[0] ?? '').trim().toLowerCase() : null;
}

function isJsonType(type: string | null): boolean {
  return type !== null && (type === 'application/json' || type.endsWith('+json'));
}

function header(headers: Headers | Record<string, string>, name: string): string | null {
  if (headers instanceof Headers) return headers.get(name);
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? null : (headers[key] ?? null);
}

/** Every `#/components/schemas/X` ref rewritten to the components' schema added to ajv under ROOT_ID. */
function absolutize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(absolutize);
  if (value && typeof value === 'object') {
    const out: Json = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/') ? `${ROOT_ID}#/$defs/${v.slice('#/components/schemas/'.length)}` : absolutize(v);
    }
    return out;
  }
  return value;
}

interface Route {
  template: string;
  regex: RegExp;
  literals: number;
  item: Json;
}

/** Validates responses against an OpenAPI 3.1 document. Schemas compile once, on first use. */
export class ContractChecker {
  readonly doc: Json;
  readonly #ajv: Ajv2020;
  readonly #routes: Route[];
  readonly #validators = new Map<unknown, ValidateFunction>();

  constructor(doc: Json) {
    this.doc = doc;
    this.#ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
    // ajv-formats is CommonJS: the plugin is its module object's `default` (and the object itself).
    addFormats.default(this.#ajv);
    const components = (doc['components'] ?? {}) as Json;
    this.#ajv.addSchema({ $id: ROOT_ID, $defs: absolutize(components['schemas'] ?? {}) });
    this.#routes = Object.entries((doc['paths'] ?? {}) as Record<string, Json>)
      .map(([template, item]) => {
        const parts = template.split('/');
        const source = parts.map((p) => (/^\{[^}]+\}$/.test(p) ? '[^/]+' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
        return { template, regex: new RegExp(`^${source}$`), literals: parts.filter((p) => !p.startsWith('{')).length, item };
      })
      // Concrete paths before templated ones (OpenAPI's matching rule).
      .sort((a, b) => b.literals - a.literals);
  }

  /** The documented operations, as `METHOD /template`. */
  operations(): string[] {
    return this.#routes.flatMap((r) => METHODS.filter((m) => r.item[m]).map((m) => `${m.toUpperCase()} ${r.template}`));
  }

  /** The path template and operation for a request, or null (HEAD is answered as GET). */
  match(method: string, pathname: string): { template: string; operation: Json | null } | null {
    const route = this.#routes.find((r) => r.regex.test(pathname));
    if (!route) return null;
    const m = method.toLowerCase();
    const op = (route.item[m] ?? (m === 'head' ? route.item['get'] : undefined)) as Json | undefined;
    return { template: route.template, operation: op ?? null };
  }

  #resolve(value: unknown): Json {
    let v = value as Json;
    for (let i = 0; i < 8 && typeof v?.['$ref'] === 'string'; i++) {
      const ref = v['$ref'] as string;
      if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
      v = ref
        .slice(2)
        .split('/')
        .reduce<unknown>((node, key) => (node as Json | undefined)?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], this.doc) as Json;
    }
    if (!v || typeof v !== 'object') throw new Error(`unresolvable reference in the document`);
    return v;
  }

  #validator(schema: Json): ValidateFunction {
    let v = this.#validators.get(schema);
    if (!v) {
      v = this.#ajv.compile(absolutize(schema) as Json);
      this.#validators.set(schema, v);
    }
    return v;
  }

  /** Compiles the schema of every documented response (every $ref must resolve); returns how many there are. */
  compileAll(): number {
    let n = 0;
    for (const route of this.#routes) {
      for (const m of METHODS) {
        const op = route.item[m] as Json | undefined;
        for (const r of Object.values((op?.['responses'] ?? {}) as Json)) {
          for (const media of Object.values((this.#resolve(r)['content'] ?? {}) as Record<string, Json>)) {
            if (media['schema']) {
              this.#validator(media['schema'] as Json);
              n++;
            }
          }
        }
      }
    }
    return n;
  }

  /** The documented response for one operation and status, or null. */
  responseFor(operation: Json, status: number): Json | null {
    const responses = (operation['responses'] ?? {}) as Json;
    const r = responses[String(status)] ?? responses[`${String(status)[0]}XX`] ?? responses['default'];
    return r ? this.#resolve(r) : null;
  }

  /** Whether this media type is one the response documents, and its schema when it has one. */
  #content(response: Json, type: string | null): { documented: boolean; schema: Json | null } {
    const content = response['content'] as Record<string, Json> | undefined;
    if (!content) return { documented: true, schema: null };
    if (type === null) return { documented: false, schema: null };
    const key = Object.keys(content).find((k) => {
      const t = k.toLowerCase();
      return t === type || t === '*/*' || (t.endsWith('/*') && type.startsWith(t.slice(0, -1)));
    });
    if (key === undefined) return { documented: false, schema: null };
    const schema = content[key]?.['schema'];
    return { documented: true, schema: schema ? (schema as Json) : null };
  }

  /** Whether this response carries a JSON body the checker needs to read (a documented schema for a JSON type). */
  needsBody(method: string, pathname: string, status: number, contentType: string | null): boolean {
    const type = mediaType(contentType);
    if (!isJsonType(type) || method.toUpperCase() === 'HEAD') return false;
    const found = this.match(method, pathname);
    if (!found?.operation) return status === 404; // the fallback's body is checked
    const response = this.responseFor(found.operation, status);
    return response !== null && this.#content(response, type).schema !== null;
  }

  check(o: Observed): CheckResult {
    const url = new URL(o.url, 'http://127.0.0.1');
    const method = o.method.toUpperCase();
    const where = `${method} ${url.pathname}${url.search} → ${o.status}`;
    const type = mediaType(header(o.headers, 'content-type'));
    const found = this.match(method, url.pathname);
    if (!found?.operation) {
      // The API router answers any other path or method with 404 NOT_FOUND (documented in info.description).
      if (url.pathname !== '/healthz' && url.pathname !== '/metrics' && o.status === 404 && isJsonType(type)) {
        const errs = this.#errors(this.#validator({ $ref: '#/components/schemas/NotFoundError' }), o.body);
        if (errs.length === 0) return { operation: null, fallback: true, violations: [] };
        return { operation: null, fallback: false, violations: [`${where}: undocumented route, and not the 404 fallback: ${errs.join('; ')}`] };
      }
      const what = found ? `method ${method} is not documented for ${found.template}` : 'path is not documented';
      return { operation: null, fallback: false, violations: [`${where}: ${what}`] };
    }
    const operation = `${method === 'HEAD' ? 'GET' : method} ${found.template}`;
    const response = this.responseFor(found.operation, o.status);
    if (!response) return { operation, fallback: false, violations: [`${where}: status ${o.status} is not documented for ${operation}`] };

    const violations: string[] = [];
    for (const [name, h] of Object.entries((response['headers'] ?? {}) as Record<string, Json>)) {
      if (this.#resolve(h)['required'] === true && header(o.headers, name) === null) violations.push(`${where}: missing required header ${name}`);
    }
    const hasBody = method !== 'HEAD' && o.status !== 204 && o.status !== 304;
    if (hasBody) {
      const { documented, schema } = this.#content(response, type);
      if (!documented) {
        const expected = Object.keys((response['content'] ?? {}) as Json).join(', ');
        violations.push(`${where}: content type ${type ?? '(none)'} is not documented (${expected})`);
      } else if (schema && isJsonType(type)) {
        if (o.unread) return { operation, fallback: false, violations };
        if (!('body' in o)) violations.push(`${where}: the body is not valid JSON`);
        else for (const e of this.#errors(this.#validator(schema), o.body)) violations.push(`${where}: body ${e}`);
      }
    }
    return { operation, fallback: false, violations };
  }

  #errors(validate: ValidateFunction, body: unknown): string[] {
    if (validate(body)) return [];
    return (validate.errors ?? []).slice(0, 5).map((e) => {
      const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : '';
      return `${e.instancePath || '/'} ${e.message ?? e.keyword}${extra}`;
    });
  }
}

let checker: ContractChecker | undefined;

/** The checker for the app's own document (built once). */
export function contract(): ContractChecker {
  checker ??= new ContractChecker(openApiDocument());
  return checker;
}

/** Checks one response (reading a clone of its body, so the caller can still read it); resolves to its violations. */
export async function checkResponse(res: Response, method = 'GET'): Promise<CheckResult> {
  const c = contract();
  const url = new URL(res.url);
  const observed: Observed = { method, url: res.url, status: res.status, headers: res.headers };
  if (c.needsBody(method, url.pathname, res.status, res.headers.get('content-type'))) {
    const text = await res
      .clone()
      .text()
      .catch(() => null);
    if (text === null) observed.unread = true;
    else {
      try {
        observed.body = JSON.parse(text);
      } catch {
        // Not JSON: check() reports it.
      }
    }
  }
  return c.check(observed);
}

/** Throws a readable error unless the response matches the document. */
export async function expectConforms(res: Response, method = 'GET'): Promise<CheckResult> {
  const result = await checkResponse(res, method);
  if (result.violations.length > 0) throw new Error(`response does not match the OpenAPI document:\n  ${result.violations.join('\n  ')}`);
  return result;
}

// ---- The root-hook plugin: every REST response in the run ----

interface RunRecord {
  validated: number;
  fallbacks: number;
  operations: Map<string, number>;
  violations: string[];
  pending: Set<Promise<void>>;
}

/** What the run has recorded so far (for tests that check the hook itself). */
export const recorded: RunRecord = { validated: 0, fallbacks: 0, operations: new Map(), violations: [], pending: new Set() };
let originalFetch: typeof fetch | undefined;

function requestMethod(input: Parameters<typeof fetch>[0], init: Parameters<typeof fetch>[1]): string {
  return (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
}

function observe(res: Response, method: string): void {
  let url: URL;
  try {
    url = new URL(res.url);
  } catch {
    return;
  }
  // After a followed redirect the final response may be S3's (also on this machine): only the app's REST paths count.
  if (!APP_HOSTS.has(url.hostname) || !isRestPath(url.pathname)) return;
  const finalMethod = res.redirected ? 'GET' : method;
  const p = checkResponse(res, finalMethod).then(
    (r) => {
      recorded.validated++;
      if (r.fallback) recorded.fallbacks++;
      if (r.operation) recorded.operations.set(r.operation, (recorded.operations.get(r.operation) ?? 0) + 1);
      recorded.violations.push(...r.violations);
    },
    (err: unknown) => {
      recorded.violations.push(`${finalMethod} ${url.pathname} → ${res.status}: the checker failed: ${String(err)}`);
    },
  );
  recorded.pending.add(p);
  void p.finally(() => recorded.pending.delete(p));
}

export const mochaHooks = {
  beforeAll(): void {
    if (originalFetch) return;
    const inner = globalThis.fetch;
    originalFetch = inner;
    globalThis.fetch = async function checkedFetch(input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]): Promise<Response> {
      const res = await inner(input, init);
      try {
        observe(res, requestMethod(input, init));
      } catch (err) {
        recorded.violations.push(`the checker failed on ${res.url}: ${String(err)}`);
      }
      return res;
    };
  },
  async afterAll(): Promise<void> {
    if (originalFetch) globalThis.fetch = originalFetch;
    originalFetch = undefined;
    // Bodies still being read (a response whose connection dropped is not waited for long).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...recorded.pending]), new Promise((r) => (timer = setTimeout(r, 5_000)))]);
    clearTimeout(timer);
    const ops = recorded.operations.size;
    const fallbacks = recorded.fallbacks > 0 ? ` (${recorded.fallbacks} to undocumented routes got the documented 404)` : '';
    console.log(`  openapi: ${recorded.validated} responses validated across ${ops} operations${fallbacks}, ${recorded.violations.length} violations`);
    if (recorded.violations.length > 0) {
      const unique = [...new Set(recorded.violations)];
      throw new Error(`${unique.length} REST responses did not match the OpenAPI document (services/http/openapi.ts):\n  ${unique.slice(0, 50).join('\n  ')}`);
    }
  },
};
