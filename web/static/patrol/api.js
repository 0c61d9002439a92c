// The JSON API under /api/v1 with the session cookie. Every call carries X-CSRF-Token (the
// value of the readable CSRF cookie). A 401 means the session is gone: the page goes to the
// login page and comes back here (the offline queue stays in IndexedDB meanwhile).

import { ApiError, describeError, readCookie, settings as config } from "../command/api.js";

export { ApiError, config, describeError };

let leaving = false;

/** The request could not reach the server (offline, DNS, connection reset). */
export class NetworkError extends Error {}

export function goToLogin() {
  if (leaving) return;
  leaving = true;
  const here = window.location.pathname + window.location.search;
  window.location.assign(`${config.loginPath}?next=${encodeURIComponent(here)}`);
}

export const isLeaving = () => leaving;

/**
 * One call: `json` (a body sent as JSON) or `form` (FormData, multipart), extra `headers`.
 * Resolves to {status, ok, body} for any HTTP answer but 401; rejects with NetworkError
 * when the server cannot be reached.
 */
export async function call(method, path, { json, form, headers = {} } = {}) {
  const sent = { Accept: "application/json, application/geo+json", ...headers,
    "X-CSRF-Token": readCookie(config.csrfCookie) ?? "" };
  let body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(config.apiBase + path, { method, headers: sent, body,
      credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    throw new NetworkError(error.message || "network error");
  }
  if (response.status === 401) {
    goToLogin();
    throw new ApiError("401", 401, null);
  }
  const data = await response.json().catch(() => null);
  return { status: response.status, ok: response.ok, body: data };
}

/** GET a JSON document; ApiError for an error status. */
export async function getJSON(path) {
  const answer = await call("GET", path);
  if (!answer.ok) {
    throw new ApiError(describeError(answer.body, answer.status), answer.status, answer.body);
  }
  return answer.body;
}
