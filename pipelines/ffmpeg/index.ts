// The runner every external media process (ffmpeg, ffprobe) runs under. child.ts is the shared core; run.ts the
// one-shot runs, probe.ts what ffprobe tells, supervised.ts the long-running, restarted FFmpeg.
export { CHILD_WRAPPED, FFMPEG_SIGNALLED_STATUS, MediaChild, STOP_GRACE_MS, StderrTail, childCommand, describeExit, spawnChild, stopChild } from './child.ts';
export type { ChildExit, MediaProgram, SpawnOptions, WatchOptions } from './child.ts';
export { FfmpegRunError, MAX_STDOUT_BYTES, runFfmpeg, runFfprobe, runOpenssl } from './run.ts';
export type { FfmpegRunErrorInit, RunOptions } from './run.ts';
export { PROBE_TIMEOUT_MS, probeDuration, probeDurationArgs } from './probe.ts';
export type { ProbeOptions } from './probe.ts';
export { DEFAULT_MAX_RESTARTS, RESTART_DELAYS_MS, RUN_RESETS_MS, SupervisedFfmpeg } from './supervised.ts';
export type { FfmpegSpec, SupervisedFfmpegEvents, SupervisedFfmpegOptions } from './supervised.ts';
