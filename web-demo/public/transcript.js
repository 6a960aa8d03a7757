// One generation's text as a client builds it from what reaches it: the status API's
// `progress` (the text of deltas 1..seq of one attempt) and `inference.delta` events
// (`{attempt, seq, delta}`). A delta is applied only when it is the next one of the attempt
// shown; a later attempt (the task was redelivered after its worker died) starts the text
// again, so text from two attempts is never mixed. The final event's `output.text` wins.

export class Transcript {
  constructor() {
    this.attempt = 0;
    this.seq = 0;
    this.text = '';
    this.final = false;
  }

  /** `progress` from GET /v1/inference/{id}; true when it moved the text on. */
  applyProgress(progress) {
    if (this.final || !progress) return false;
    if (progress.attempt < this.attempt) return false;
    if (progress.attempt === this.attempt && progress.seq <= this.seq) return false;
    Object.assign(this, { attempt: progress.attempt, seq: progress.seq, text: progress.text });
    return true;
  }

  /**
   * An `inference.delta`: 'appended', 'restarted' (a new attempt's first delta), 'gap' (a
   * delta was missed: read the progress again) or 'ignored' (already shown, or stale).
   */
  applyDelta(delta) {
    if (this.final || delta.attempt < this.attempt) return 'ignored';
    if (delta.attempt > this.attempt) {
      if (delta.seq !== 1) return 'gap';
      Object.assign(this, { attempt: delta.attempt, seq: 1, text: delta.delta });
      return 'restarted';
    }
    if (delta.seq <= this.seq) return 'ignored';
    if (delta.seq !== this.seq + 1) return 'gap';
    this.seq = delta.seq;
    this.text += delta.delta;
    return 'appended';
  }

  /** The task's final event or record. */
  finish(record) {
    this.final = true;
    if (typeof record.output?.text === 'string') this.text = record.output.text;
  }
}
