// Call-in's arithmetic: which minutes a call has begun (one call_tick each, and what its bill counts).
import { expect } from 'chai';
import { startedMinutes } from '../../services/calls/desk.ts';

describe('call-in: started minutes', () => {
  it('counts a minute from its first instant, whatever the wall clock says', () => {
    const t0 = Date.parse('2026-12-07T10:00:59.700Z'); // 0.3 s before a wall-clock minute: it must not matter
    const at = (s: number) => startedMinutes(t0, t0 + s * 1000);
    expect([0, 0.3, 59.999, 60, 119.9, 120, 150, 180].map(at)).to.deep.equal([1, 1, 1, 2, 2, 3, 3, 4]);
    expect(at(-1), 'before it connected').to.equal(0);
    expect(startedMinutes(Number.NaN, t0), 'never connected').to.equal(0);
    expect(startedMinutes(0, 2500, 1000), 'another minute length').to.equal(3);
  });
});
