// The patrol page's service worker: the page and its scripts are fetched from the network
// when it answers (always the current version) and kept in a cache, which serves a reload
// while the phone is offline. API calls are never touched: the page queues its writes in
// IndexedDB itself. Served at /patrol/sw.js with Service-Worker-Allowed: /patrol.

const CACHE = "gridops-patrol-shell";
const SHELL = [
  "/patrol",
  "/static/patrol/patrol.css",
  "/static/patrol/main.js",
  "/static/patrol/api.js",
  "/static/patrol/dom.js",
  "/static/patrol/i18n.js",
  "/static/patrol/geo.js",
  "/static/patrol/map.js",
  "/static/patrol/checklist.js",
  "/static/patrol/report.js",
  "/static/patrol/queue.js",
  "/static/patrol/sync.js",
  "/static/command/dom.js",
  "/static/command/api.js",
  "/static/i18n.js",
  "/vendor/maplibre-gl/maplibre-gl.js",
  "/vendor/maplibre-gl/maplibre-gl.css",
];

const kept = (url) => url.origin === self.location.origin
  && (url.pathname === "/patrol" || url.pathname.startsWith("/static/patrol/")
    || ["/static/command/dom.js", "/static/command/api.js", "/static/i18n.js"].includes(url.pathname) || url.pathname.startsWith("/vendor/maplibre-gl/"));

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // one by one: a missing file (MapLibre not installed) must not stop the rest
    await Promise.all(SHELL.map(async (path) => {
      try {
        const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
        if (response.ok && !response.redirected) await cache.put(path, response);
      } catch {
        // offline while installing: the next visit fills the cache
      }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

async function networkFirst(request, url) {
  const key = url.pathname; // the page without its query; scripts by path
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic" && !response.redirected) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(key, copy)).catch(() => null);
    }
    return response;
  } catch (error) {
    const hit = await caches.match(key);
    if (hit) return hit;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET") return;
  const url = new URL(event.request.url);
  if (!kept(url)) return;
  event.respondWith(networkFirst(event.request, url));
});
