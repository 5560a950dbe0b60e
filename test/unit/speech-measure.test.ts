// The measurement behind test/timeline/speech.test.ts: the energy VAD, the bridging of short pauses, the share of
// agreeing windows and the onset/offset errors, on hand-made input.
import { expect } from 'chai';
import { agreement, bridge, edgeErrors, speechActivity, type Interval } from '../support/speech.ts';

describe('unit: speech measurement (VAD, agreement, edge errors)', () => {
  it('speech is within withinDb of the 90th-percentile level; pauses shorter than the bridge are joined', () => {
    // 20 ms windows: 1 s silence, 1 s speech (0.2 s of it 30 dB down), 0.4 s pause, 1 s speech, 1 s pause, 0.5 s speech.
    const levels = [
      ...Array(50).fill(-120), ...Array(20).fill(-20), ...Array(10).fill(-50), ...Array(20).fill(-22),
      ...Array(20).fill(-120), ...Array(50).fill(-21), ...Array(50).fill(-120), ...Array(25).fill(-20),
    ];
    const r = speechActivity(levels, { withinDb: 40, bridgeSec: 0.6 });
    expect(r.speechLevelDb).to.equal(-20);
    expect(r.intervals.map(([a, b]) => [+a.toFixed(2), +b.toFixed(2)])).to.deep.equal([[1, 3.4], [4.4, 4.9]]);
    const strict = speechActivity(levels, { withinDb: 20, bridgeSec: 0.1 });
    expect(strict.intervals.map(([a, b]) => [+a.toFixed(2), +b.toFixed(2)])).to.deep.equal([[1, 1.4], [1.6, 2], [2.4, 3.4], [4.4, 4.9]]);
  });

  it('bridge joins only gaps below its limit', () => {
    expect(bridge([[0, 1], [1.5, 2], [2.6, 3]], 0.6)).to.deep.equal([[0, 2], [2.6, 3]]);
  });

  it('agreement counts 20 ms windows by their centre within [from, to)', () => {
    const truth: Interval[] = [[1, 2]];
    expect(agreement(truth, [[1, 2]], 0, 3)).to.deep.equal({ share: 1, windows: 150 });
    const late = agreement(truth, [[1.2, 2.2]], 0, 3);
    expect(late.windows).to.equal(150);
    expect(late.share).to.be.closeTo(130 / 150, 1e-9);
  });

  it('edge errors: groups of overlapping intervals; merges, splits, misses, false alarms; cut groups left out', () => {
    const truth: Interval[] = [[0.5, 1.5], [2, 3], [3.4, 4], [5, 6], [7, 8], [9.5, 10.5]];
    const detected: Interval[] = [[0.4, 1.6], [1.9, 4.1], [5.1, 5.4], [5.6, 6.2], [8.5, 8.7], [10, 10.6]];
    const e = edgeErrors(truth, detected, 0.45, 10.2);
    // The first group starts at 0.4, before from, and the last ends after to: both left out.
    expect(e.onsets.map((x) => +x.toFixed(3))).to.deep.equal([-0.1, 0.1]);
    expect(e.offsets.map((x) => +x.toFixed(3))).to.deep.equal([0.1, 0.2]);
    expect({ merged: e.merged, split: e.split, missed: e.missed, falseAlarms: e.falseAlarms }).to.deep.equal({ merged: 1, split: 1, missed: 1, falseAlarms: 1 });
  });
});
