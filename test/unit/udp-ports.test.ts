// The mix's UDP inputs: free even/odd pairs, outside the mediasoup workers' RTC port range.
import { expect } from 'chai';
import { reserveRtpPorts } from '../../pipelines/mixer/udpPorts.ts';

describe('mixer UDP ports', () => {
  it('reserves free even ports with a free odd neighbour, none inside the ranges to avoid', async () => {
    // Linux's ephemeral range is 32768-60999: avoid most of it, as a wide RTC range would.
    const avoid = [{ min: 32768, max: 56999 }];
    const ports = await reserveRtpPorts(8, avoid);
    expect(ports).to.have.length(8);
    expect(new Set(ports).size).to.equal(8);
    for (const p of ports) {
      expect(p % 2, `${p} is even`).to.equal(0);
      expect(p >= 32768 && p <= 56999, `${p} is outside the avoided range`).to.equal(false);
      expect(p + 1 >= 32768 && p + 1 <= 56999, `${p + 1} is outside the avoided range`).to.equal(false);
    }
  });
});
