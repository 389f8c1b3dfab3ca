/**
 * The virtual NIC as the guest sees it. The VMM's network device accepts connections at the
 * VM's own IP and queues each HTTP request as a frame; the guest takes frames at its step
 * boundaries and transmits replies. The queue is bounded: when it is full the device answers
 * 503 itself (the guest is overloaded), as a real NIC would drop.
 */
export interface NicRequest {
  /** Device-assigned id that pairs the reply with its request. */
  id: number;
  method: string;
  path: string;
  /** Request body, bounded by the device. */
  body: Uint8Array;
}

export interface NicReply {
  id: number;
  status: number;
  contentType: string;
  body: Uint8Array;
}

export interface VirtualNic {
  /** The VM's IP address (for guest output; the device owns the socket). */
  readonly ip: string;
  /** Next request waiting, or null. */
  receive(): NicRequest | null;
  /** Send the reply to a request taken with receive(). */
  transmit(reply: NicReply): void;
}
