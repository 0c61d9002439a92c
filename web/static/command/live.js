// The live feed: Server-Sent Events from /api/v1/events (the browser reconnects by itself
// and sends Last-Event-ID, so nothing is missed). While the feed cannot be reached the page
// polls, and keeps trying the feed.

import { apiUrl, getJSON } from "./api.js";
import { t } from "./i18n.js";

const TYPES = ["incident.created", "incident.status", "incident.escalated", "incidents.imported",
  "incident.extension", "incident.followup", "dispatch.created", "dispatch.status",
  "whistle.blown", "team.status", "team.position", "team.updated", "boundaries.changed",
  "joint_zones.changed", "road_graph.imported", "department.rated"];
const POLL_MS = 5000;
const RETRY_MS = 30000;

const indicator = () => document.getElementById("live");

function setState(state) {
  const el = indicator();
  el.dataset.state = state;
  el.querySelector(".live-text").textContent = t(`live.${state}`);
}

export function renderLiveState() {
  setState(indicator().dataset.state || "connecting");
}

/** Deliver each live event (parsed JSON) to `onEvent`, once per event id. */
export function connectLive(onEvent) {
  const seen = new Set();
  const deliver = (message) => {
    const event = JSON.parse(message.data);
    const key = event.id ?? message.lastEventId;
    if (key != null && seen.has(key)) return;
    if (key != null) seen.add(key);
    onEvent(event);
  };
  let poller = null;
  const open = () => {
    setState("connecting");
    const source = new EventSource(apiUrl("/events"));
    source.onmessage = deliver;
    for (const type of TYPES) source.addEventListener(type, deliver);
    source.onopen = () => {
      clearInterval(poller);
      poller = null;
      setState("open");
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return setState("connecting");
      source.close(); // refused (not there yet, or signed out): poll, and try again later
      setState("polling");
      poller ??= setInterval(() => poll(onEvent), POLL_MS);
      setTimeout(open, RETRY_MS);
      return undefined;
    };
  };
  open();
}

async function poll(onEvent) {
  await getJSON("/auth/me"); // a 401 sends the user to the login page
  onEvent({ type: "poll", layers: ["incidents", "teams"] });
}
