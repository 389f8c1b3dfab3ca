/**
 * Bounds on everything a session holds or waits for. Every queue, buffer and wait of the
 * session layer takes its bound from here.
 */
export interface SessionLimits {
  /** CmdSN window: commands the initiator may have outstanding (MaxCmdSN - ExpCmdSN + 1). */
  queueDepth: number;
  /** Hard cap on tasks in a session's task table (immediate commands bypass the window). */
  maxTasks: number;
  /** Largest Expected Data Transfer Length of one command. */
  maxCommandBytes: number;
  /** Write data a session may be collecting at once (sum of the write buffers). */
  maxSessionWriteBytes: number;
  /** Sessions the target accepts in total. */
  maxSessions: number;
  /** A login must reach full feature phase within this time. */
  loginTimeoutMs: number;
  /** Login PDUs one login may take. */
  maxLoginPdus: number;
  /** Idle time before the target pings the initiator with a NOP-In; 0 disables pings. */
  nopIntervalMs: number;
  /** Time the initiator has to answer that ping before the connection is dropped. */
  nopTimeoutMs: number;
  /** A write that receives no Data-Out for this long is dropped. */
  dataOutTimeoutMs: number;
  /** How long task management and logout wait for aborted tasks to wind down. */
  settleWaitMs: number;
  /** Bytes of output queued on a socket before the connection stops reading (backpressure). */
  maxOutputBytes: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  queueDepth: 128,
  maxTasks: 256,
  maxCommandBytes: 32 * 1024 * 1024,
  maxSessionWriteBytes: 256 * 1024 * 1024,
  maxSessions: 1024,
  loginTimeoutMs: 15_000,
  maxLoginPdus: 64,
  nopIntervalMs: 30_000,
  nopTimeoutMs: 60_000,
  dataOutTimeoutMs: 60_000,
  settleWaitMs: 10_000,
  maxOutputBytes: 8 * 1024 * 1024,
};
