/**
 * The abort signal a task hands to the SCSI layer (ScsiRequest.signal), cheap to create.
 *
 * Node 20 builds an AbortSignal by re-prototyping an EventTarget, which costs about 5 us: at
 * tens of thousands of commands per second that alone eats a large share of a core. Most tasks
 * are never aborted and their signal is only ever asked `aborted`, so this signal answers
 * `aborted`, `reason` and `throwIfAborted()` from a field and creates a real AbortSignal only
 * when someone subscribes to it (addEventListener / onabort), forwarding to it from then on.
 * It is accepted wherever Node validates an abort signal (an object with `aborted`).
 */
export class TaskSignal implements AbortSignal {
  private controller: AbortController | null = null;
  private abortedFlag = false;
  private why: unknown = undefined;

  get aborted(): boolean {
    return this.abortedFlag;
  }

  get reason(): unknown {
    return this.why;
  }

  get onabort(): AbortSignal['onabort'] {
    return this.controller ? this.controller.signal.onabort : null;
  }

  set onabort(fn: AbortSignal['onabort']) {
    this.real().onabort = fn;
  }

  throwIfAborted(): void {
    if (this.abortedFlag) throw this.why;
  }

  addEventListener(...args: Parameters<AbortSignal['addEventListener']>): void {
    this.real().addEventListener(...args);
  }

  removeEventListener(...args: Parameters<AbortSignal['removeEventListener']>): void {
    this.controller?.signal.removeEventListener(...args);
  }

  dispatchEvent(event: Event): boolean {
    return this.real().dispatchEvent(event);
  }

  /** Abort (idempotent); listeners, if any, fire now. */
  abort(reason?: unknown): void {
    if (this.abortedFlag) return;
    this.abortedFlag = true;
    this.why = reason ?? new DOMException('The task was aborted', 'AbortError');
    this.controller?.abort(this.why);
  }

  private real(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedFlag) this.controller.abort(this.why);
    }
    return this.controller.signal;
  }
}
