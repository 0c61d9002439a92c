// The offline queue and the page's own records, in IndexedDB (one database per user, so a
// phone shared by two people never sends one's records with the other's session):
//
//   queue    every write waiting to be sent, in order (seq = auto-increment): start, fix,
//            check, report, photo (the image as a Blob), end — each with its client key
//            (crypto.randomUUID(), decided when it was queued)
//   failed   items the server refused for good (a 4xx other than "already done"); shown,
//            kept until retried or discarded
//   ids      client key -> server id (a patrol's key -> patrol id, a report's key ->
//            incident id), or the reason its creation failed
//   patrols  the local record of each patrol (track, checks, reports, counts): what the page
//            shows, and what it resumes after a reload
//   meta     the last answers of GET /patrol/me, /patrol/checklist, /event-classes (the page
//            works offline from them)

const VERSION = 1;

const req = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

const done = (transaction) => new Promise((resolve, reject) => {
  transaction.oncomplete = () => resolve();
  transaction.onerror = () => reject(transaction.error);
  transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
});

function open(name) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("queue", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("failed", { keyPath: "seq" });
      db.createObjectStore("ids", { keyPath: "key" });
      db.createObjectStore("patrols", { keyPath: "key" });
      db.createObjectStore("meta", { keyPath: "name" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
  });
}

export const newKey = () => crypto.randomUUID();

export class Queue {
  /** The queue of user `userId` (its own database). */
  static async open(userId) {
    return new Queue(await open(`gridops-patrol-u${userId}`));
  }

  constructor(db) {
    this.db = db;
    this.listeners = [];
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    for (const listener of this.listeners) listener();
  }

  /**
   * Queue `items` (each {kind, key, patrolKey, ...}) and store `patrol` (the local record,
   * if given) in one transaction: both or neither survive a crash or a reload.
   */
  async add(items, patrol = null) {
    const t = this.db.transaction(["queue", "patrols"], "readwrite");
    const queued = Date.now();
    for (const item of items) {
      t.objectStore("queue").add({ attempts: 0, queuedAt: queued, ...item });
    }
    if (patrol) t.objectStore("patrols").put(patrol);
    await done(t);
    this.changed();
  }

  /** Replace pending check items of the same patrol and item (the newest tick wins anyway)
   * by `item`, updating `patrol` in the same transaction. */
  async addCheck(item, patrol) {
    const t = this.db.transaction(["queue", "patrols"], "readwrite");
    const store = t.objectStore("queue");
    const all = await req(store.getAll());
    for (const old of all) {
      if (old.kind === "check" && old.patrolKey === item.patrolKey && old.code === item.code) {
        store.delete(old.seq); // if it is being sent right now, sending it again is harmless
      }
    }
    store.add({ attempts: 0, queuedAt: Date.now(), ...item });
    t.objectStore("patrols").put(patrol);
    await done(t);
    this.changed();
  }

  /** The first `n` items, oldest first. */
  async head(n) {
    const t = this.db.transaction("queue");
    const items = await req(t.objectStore("queue").getAll(null, n));
    return items;
  }

  async all() {
    return req(this.db.transaction("queue").objectStore("queue").getAll());
  }

  async count() {
    return req(this.db.transaction("queue").objectStore("queue").count());
  }

  /** Sent and acknowledged: remove them (and store `ids` mappings, if any, atomically). */
  async remove(seqs, ids = []) {
    const t = this.db.transaction(["queue", "ids"], "readwrite");
    for (const seq of seqs) t.objectStore("queue").delete(seq);
    for (const entry of ids) t.objectStore("ids").put(entry);
    await done(t);
    this.changed();
  }

  /** Count a failed attempt (kept in the queue, retried later). */
  async bump(items, message) {
    const t = this.db.transaction("queue", "readwrite");
    for (const item of items) {
      t.objectStore("queue").put({ ...item, attempts: (item.attempts ?? 0) + 1,
        lastError: message });
    }
    await done(t);
  }

  /** Refused for good: move to the failed store with the reason; a failed creation also
   * records its key as failed, so that the items depending on it fail with it. */
  async fail(items, status, message) {
    const t = this.db.transaction(["queue", "failed", "ids"], "readwrite");
    for (const item of items) {
      t.objectStore("queue").delete(item.seq);
      t.objectStore("failed").put({ ...item, status, message, failedAt: Date.now() });
      if (item.kind === "start" || item.kind === "report") {
        t.objectStore("ids").put({ key: item.key, kind: item.kind, failed: message });
      }
    }
    await done(t);
    this.changed();
  }

  async failures() {
    return req(this.db.transaction("failed").objectStore("failed").getAll());
  }

  /** Queue a failed item again (at the end of the queue). */
  async retry(seq) {
    const t = this.db.transaction(["queue", "failed", "ids"], "readwrite");
    const item = await req(t.objectStore("failed").get(seq));
    if (item) {
      t.objectStore("failed").delete(seq);
      const { seq: _old, status: _s, message: _m, failedAt: _f, ...rest } = item;
      t.objectStore("queue").add({ ...rest, attempts: 0, queuedAt: Date.now() });
      if (item.kind === "start" || item.kind === "report") t.objectStore("ids").delete(item.key);
    }
    await done(t);
    this.changed();
  }

  async drop(seq) {
    const t = this.db.transaction("failed", "readwrite");
    t.objectStore("failed").delete(seq);
    await done(t);
    this.changed();
  }

  /** The server id of a client key: {key, id} or {key, failed}, or undefined if unknown. */
  async id(key) {
    return req(this.db.transaction("ids").objectStore("ids").get(key));
  }

  async setId(key, id, kind) {
    const t = this.db.transaction("ids", "readwrite");
    t.objectStore("ids").put({ key, id, kind });
    await done(t);
  }

  async patrol(key) {
    return req(this.db.transaction("patrols").objectStore("patrols").get(key));
  }

  async patrols() {
    return req(this.db.transaction("patrols").objectStore("patrols").getAll());
  }

  async putPatrol(patrol) {
    const t = this.db.transaction("patrols", "readwrite");
    t.objectStore("patrols").put(patrol);
    await done(t);
  }

  /** Forget ended patrols older than `days` that have nothing left in the queue. */
  async prune(days = 7) {
    const pending = new Set((await this.all()).map((item) => item.patrolKey));
    const cutoff = Date.now() - days * 86400e3;
    const t = this.db.transaction("patrols", "readwrite");
    const store = t.objectStore("patrols");
    for (const patrol of await req(store.getAll())) {
      if (patrol.status === "ended" && Date.parse(patrol.startedAt) < cutoff
          && !pending.has(patrol.key)) store.delete(patrol.key);
    }
    await done(t);
  }

  async meta(name) {
    const row = await req(this.db.transaction("meta").objectStore("meta").get(name));
    return row?.value;
  }

  async setMeta(name, value) {
    const t = this.db.transaction("meta", "readwrite");
    t.objectStore("meta").put({ name, value });
    await done(t);
  }
}
