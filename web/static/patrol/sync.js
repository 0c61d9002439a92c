// The sync loop: sends the IndexedDB queue to the server in order, while the browser is
// online. Consecutive fixes of a patrol go in one request (up to `upload_batch`; a partial
// batch waits until its oldest fix is ~10 s old, or something else is queued behind it).
//
// Exactly once: every item keeps the client key it was given when queued, and the server
// makes a repeat harmless (start and report by Idempotency-Key, fixes by their time, checks
// by item, end is idempotent, a photo already attached answers 409). An item leaves the
// queue only after the server acknowledged it, so a reload or a lost answer resends it.
//
// Outcomes: 2xx (and 409 "already attached" for photos) = done; network error, 408, 429,
// 5xx = kept and retried with exponential backoff (and at once on the 'online' event); 401 =
// the login page (the queue stays); any other 4xx = failed for good: moved to the failed
// store, shown, never retried on its own.

import { ApiError, call, describeError, isLeaving, NetworkError } from "./api.js";

const FLUSH_AFTER_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;
const SAFETY_TICK_MS = 5_000;

class DependencyFailed extends Error {}

const retryable = (status) => status >= 500 || status === 408 || status === 429;
const alreadyAttached = (answer) => answer.status === 409
  && /already attached/i.test(describeError(answer.body, answer.status));
const serverId = (body) => body?.properties?.id ?? body?.id;

export class Sync {
  /**
   * `queue`: the Queue; `uploadBatch`: fixes per request; `onSent(kind, items, body)`:
   * called after the server acknowledged items; `onState()`: the indicator may change;
   * `dependencyMessage(message)`: the text for items whose patrol or report failed.
   */
  constructor(queue, { uploadBatch = 20, onSent = () => {}, onState = () => {},
    dependencyMessage = (m) => m, lockName = "gridops-patrol-sync" } = {}) {
    this.queue = queue;
    this.uploadBatch = uploadBatch;
    this.onSent = onSent;
    this.onState = onState;
    this.dependencyMessage = dependencyMessage;
    this.lockName = lockName;
    this.running = false;
    this.again = false;
    this.attempt = 0;
    this.timer = null;
    this.timerAt = 0;
    this.notBefore = 0; // backoff: no attempt before this time (ms)
    this.flushing = false;
    this.sending = false;
    this.lastError = null;
    window.addEventListener("online", () => {
      this.attempt = 0;
      this.notBefore = 0;
      clearTimeout(this.timer);
      this.timer = null;
      this.onState();
      this.kick();
    });
    window.addEventListener("offline", () => this.onState());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.flush();
    });
    setInterval(() => this.kick(), SAFETY_TICK_MS);
  }

  get online() {
    return navigator.onLine;
  }

  /** Run in `delay` ms (not before the backoff allows), unless a run is due sooner. */
  kick(delay = 0) {
    const at = Math.max(Date.now() + delay, this.notBefore);
    if (this.timer !== null && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, at - Date.now());
  }

  /** Send partial fix batches now (ending a patrol, leaving the page). */
  flush() {
    this.flushing = true;
    this.kick();
  }

  async run() {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      if (navigator.locks) {
        // one tab sends at a time (two would only send harmless repeats, but why)
        await navigator.locks.request(this.lockName, { ifAvailable: true }, async (lock) => {
          if (lock) await this.loop();
        });
      } else {
        await this.loop();
      }
    } catch (error) {
      console.error("sync", error);
      this.notBefore = Date.now() + SAFETY_TICK_MS;
    } finally {
      this.running = false;
      this.sending = false;
      this.onState();
      if (this.again) {
        this.again = false;
        this.kick();
      }
    }
  }

  async loop() {
    while (navigator.onLine && !isLeaving()) {
      const outcome = await this.step();
      if (outcome !== "next") break;
    }
    if ((await this.queue.count()) === 0) this.flushing = false;
  }

  /** Send the head of the queue: "next" (go on), "idle", "wait" or "retry" (stop). */
  async step() {
    const items = await this.queue.head(this.uploadBatch + 1);
    if (!items.length) return "idle";
    const first = items[0];
    if (first.kind !== "fix") return this.send([first]);
    const batch = [];
    for (const item of items) {
      if (item.kind !== "fix" || item.patrolKey !== first.patrolKey
          || batch.length >= this.uploadBatch) break;
      batch.push(item);
    }
    const more = items.length > batch.length;
    const age = Date.now() - first.queuedAt;
    if (!more && !this.flushing && batch.length < this.uploadBatch && age < FLUSH_AFTER_MS) {
      this.kick(FLUSH_AFTER_MS - age + 50);
      return "wait";
    }
    return this.send(batch);
  }

  /** The server id of a client key; DependencyFailed if its creation failed. */
  async resolve(key, what) {
    const entry = await this.queue.id(key);
    if (entry?.id !== undefined && entry?.id !== null) return entry.id;
    if (entry?.failed) throw new DependencyFailed(this.dependencyMessage(entry.failed));
    throw new DependencyFailed(this.dependencyMessage(`unknown ${what} ${key}`));
  }

  async request(items) {
    const first = items[0];
    switch (first.kind) {
      case "start":
        return call("POST", "/patrols", { json: first.body,
          headers: { "Idempotency-Key": first.key } });
      case "fix": {
        const id = await this.resolve(first.patrolKey, "patrol");
        return call("POST", `/patrols/${id}/fixes`, { json: { fixes: items.map((i) => i.fix) } });
      }
      case "check": {
        const id = await this.resolve(first.patrolKey, "patrol");
        return call("PUT", `/patrols/${id}/checks/${encodeURIComponent(first.code)}`,
          { json: first.body });
      }
      case "report": {
        const id = await this.resolve(first.patrolKey, "patrol");
        return call("POST", `/patrols/${id}/reports`, { json: first.body,
          headers: { "Idempotency-Key": first.key } });
      }
      case "photo": {
        const incident = await this.resolve(first.reportKey, "report");
        const form = new FormData();
        form.append("photo", first.blob, first.filename || "photo.jpg");
        return call("POST", `/incidents/${incident}/photos`, { form });
      }
      case "end": {
        const id = await this.resolve(first.patrolKey, "patrol");
        return call("POST", `/patrols/${id}/end`, { json: first.body });
      }
      default:
        throw new DependencyFailed(`unknown item kind ${first.kind}`);
    }
  }

  async send(items) {
    const first = items[0];
    const seqs = items.map((i) => i.seq);
    this.sending = true;
    this.onState();
    let answer;
    try {
      answer = await this.request(items);
    } catch (error) {
      if (error instanceof DependencyFailed) {
        await this.queue.fail(items, 0, error.message);
        return "next";
      }
      if (error instanceof NetworkError) return this.backoff(items, error.message);
      if (error instanceof ApiError && error.status === 401) return "retry"; // to the login page
      throw error;
    }
    if (answer.ok || (first.kind === "photo" && alreadyAttached(answer))) {
      const ids = [];
      if (first.kind === "start" || first.kind === "report") {
        const id = first.kind === "start" ? serverId(answer.body)
          : serverId(answer.body?.incident);
        ids.push({ key: first.key, id, kind: first.kind });
      }
      await this.queue.remove(seqs, ids);
      this.attempt = 0;
      this.notBefore = 0;
      this.lastError = null;
      try {
        this.onSent(first.kind, items, answer.body);
      } catch (error) {
        console.error("onSent", error);
      }
      return "next";
    }
    const message = describeError(answer.body, answer.status);
    if (retryable(answer.status)) return this.backoff(items, message);
    await this.queue.fail(items, answer.status, message);
    return "next";
  }

  async backoff(items, message) {
    this.attempt += 1;
    this.lastError = message;
    await this.queue.bump(items, message);
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.attempt - 1))
      * (0.8 + 0.4 * Math.random());
    this.notBefore = Date.now() + delay;
    this.kick();
    return "retry";
  }
}
