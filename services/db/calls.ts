// Calls (sql/007_calls.sql): each call's row, written as an absolute snapshot of its state, and its events in order.
// Both writes are idempotent (an upsert and an insert that ignores a repeat), so the journaled write-behind may
// replay them after a crash or an outage.
import type { CallEndReason, CallEvent, CallEventType, CallStatus, CallView } from '../shared/calls.ts';
import type { Db } from './db.ts';
import { toDate, toDateOrNull } from './rows.ts';

type Queryable = Pick<Db, 'query'>;

/** A call as stored: the view without what is live only (muted). Dates are ISO strings (journal-safe). */
export interface CallRecord {
  id: string;
  stageId: string;
  broadcastId: string | null;
  name: string;
  topic: string | null;
  status: CallStatus;
  endReason: CallEndReason | null;
  requestedAt: string;
  acceptedAt: string | null;
  connectedAt: string | null;
  endedAt: string | null;
  minutes: number;
  rateMinor: number | null;
  currency: string | null;
  billMinor: number | null;
  performerId: string | null;
}

interface Row {
  id: string;
  stage_id: string;
  broadcast_id: string | null;
  name: string;
  topic: string | null;
  status: CallStatus;
  end_reason: CallEndReason | null;
  requested_at: unknown;
  accepted_at: unknown;
  connected_at: unknown;
  ended_at: unknown;
  minutes: number;
  rate_minor: number | null;
  currency: string | null;
  bill_minor: number | null;
}

const COLUMNS =
  'id, stage_id, broadcast_id, name, topic, status, end_reason, requested_at, accepted_at, connected_at, ended_at, minutes, rate_minor, currency, bill_minor';

const iso = (v: unknown) => toDateOrNull(v)?.toISOString() ?? null;

function fromRow(r: Row): CallRecord {
  return {
    id: r.id,
    stageId: r.stage_id,
    broadcastId: r.broadcast_id,
    name: r.name,
    topic: r.topic,
    status: r.status,
    endReason: r.end_reason,
    requestedAt: toDate(r.requested_at).toISOString(),
    acceptedAt: iso(r.accepted_at),
    connectedAt: iso(r.connected_at),
    endedAt: iso(r.ended_at),
    minutes: Number(r.minutes),
    rateMinor: r.rate_minor === null ? null : Number(r.rate_minor),
    currency: r.currency,
    billMinor: r.bill_minor === null ? null : Number(r.bill_minor),
    // The caller's performer id on the stage is the call's id.
    performerId: r.accepted_at === null ? null : r.id,
  };
}

/** The view REST and the pages show (muted is live state: false once stored). */
export function callView(c: CallRecord, muted = false): CallView {
  return {
    id: c.id,
    stageId: c.stageId,
    name: c.name,
    topic: c.topic,
    status: c.status,
    endReason: c.endReason,
    requestedAt: c.requestedAt,
    acceptedAt: c.acceptedAt,
    connectedAt: c.connectedAt,
    endedAt: c.endedAt,
    minutes: c.minutes,
    muted,
    performerId: c.performerId,
    rate: c.rateMinor !== null && c.currency !== null ? { currency: c.currency, amountMinor: c.rateMinor } : null,
    bill: c.billMinor !== null && c.currency !== null ? { currency: c.currency, amountMinor: c.billMinor } : null,
  };
}

export class CallRepo {
  constructor(private readonly db: Queryable) {}

  /** Writes the call's state (an upsert of absolute values) and, when given, one event (ignored if already there). */
  async record(call: CallRecord, event: { seq: number; type: CallEventType; at: string; data: CallEvent['data'] } | null): Promise<void> {
    await this.db.query(
      `insert into calls (${COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
       on conflict (id) do update set broadcast_id = excluded.broadcast_id, status = excluded.status,
         end_reason = excluded.end_reason, accepted_at = excluded.accepted_at, connected_at = excluded.connected_at,
         ended_at = excluded.ended_at, minutes = excluded.minutes, rate_minor = excluded.rate_minor,
         currency = excluded.currency, bill_minor = excluded.bill_minor`,
      [
        call.id, call.stageId, call.broadcastId, call.name, call.topic, call.status, call.endReason, call.requestedAt,
        call.acceptedAt, call.connectedAt, call.endedAt, call.minutes, call.rateMinor, call.currency, call.billMinor,
      ],
    );
    if (event) {
      await this.db.query(
        `insert into call_events (call_id, seq, type, at, data) values ($1, $2, $3, $4, $5) on conflict (call_id, seq) do nothing`,
        [call.id, event.seq, event.type, event.at, JSON.stringify(event.data)],
      );
    }
  }

  async get(id: string): Promise<CallRecord | null> {
    const { rows } = await this.db.query<Row>(`select ${COLUMNS} from calls where id = $1`, [id]);
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async listForStage(stageId: string, limit = 200): Promise<CallRecord[]> {
    const { rows } = await this.db.query<Row>(`select ${COLUMNS} from calls where stage_id = $1 order by requested_at desc limit $2`, [stageId, limit]);
    return rows.map(fromRow);
  }

  async events(callId: string): Promise<CallEvent[]> {
    const { rows } = await this.db.query<{ seq: number; type: CallEventType; at: unknown; data: unknown }>(
      'select seq, type, at, data from call_events where call_id = $1 order by seq',
      [callId],
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      type: r.type,
      at: toDate(r.at).toISOString(),
      data: (typeof r.data === 'string' ? JSON.parse(r.data) : r.data) as CallEvent['data'],
    }));
  }

  /** A stage's call rate (null: free). */
  async rate(stageId: string): Promise<{ currency: string; amountMinor: number } | null> {
    const { rows } = await this.db.query<{ call_rate_minor: number | null; call_currency: string | null }>(
      'select call_rate_minor, call_currency from stages where id = $1',
      [stageId],
    );
    const r = rows[0];
    return r && r.call_rate_minor !== null && r.call_currency !== null ? { currency: r.call_currency, amountMinor: Number(r.call_rate_minor) } : null;
  }

  /**
   * Calls an earlier run left open (it crashed or was killed): a request is cancelled, a call ended, both with reason
   * server and a call_end / call_cancelled event; a call on air is billed for the minutes it was ticked.
   */
  async closeAllOpen(stageIds: readonly string[] | null = null): Promise<number> {
    const { rows } = await this.db.query<{ id: string; status: string; minutes: number }>(
      `update calls set status = case when status = 'waiting' then 'cancelled' else 'ended' end, end_reason = 'server',
         ended_at = now(), bill_minor = case when rate_minor is null then null else minutes * rate_minor end
       where status in ('waiting', 'accepted', 'on_air') and ($1::text[] is null or stage_id = any($1::text[]))
       returning id, status, minutes`,
      [stageIds],
    );
    for (const r of rows) {
      await this.db.query(
        `insert into call_events (call_id, seq, type, at, data)
         select $1::text, coalesce(max(seq), 0) + 1, $2::text, now(), $3::jsonb from call_events where call_id = $1::text
         on conflict (call_id, seq) do nothing`,
        [r.id, r.status === 'cancelled' ? 'call_cancelled' : 'call_end', JSON.stringify({ reason: 'server', minutes: Number(r.minutes) })],
      );
    }
    return rows.length;
  }

  async setRate(stageId: string, rate: { currency: string; amountMinor: number } | null): Promise<boolean> {
    const { rows } = await this.db.query<{ id: string }>(
      'update stages set call_rate_minor = $2, call_currency = $3 where id = $1 returning id',
      [stageId, rate?.amountMinor ?? null, rate?.currency ?? null],
    );
    return rows.length > 0;
  }
}
