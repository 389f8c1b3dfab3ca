/** Counters of the virtual NIC (what the device did, not what the guest did). */
export class NetMetrics {
  /** Requests accepted into the receive queue. */
  received = 0;
  /** Replies the guest transmitted that reached their client. */
  replied = 0;
  /** Requests refused with 503 because the queue was full. */
  rejectedQueueFull = 0;
  /** Requests answered 504 by the device because the guest did not reply in time. */
  timedOut = 0;
  /** Requests refused with 413 (body over the cap). */
  tooLarge = 0;
  /** Requests answered 503 because the device was reset or closed. */
  drained = 0;
  /** Replies for requests whose client had gone or that had timed out. */
  orphanReplies = 0;

  snapshot(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}
