// The JSON API under /api/v1 with the session cookie; state changes carry the CSRF header.
// A 401 means the session is gone: sign in again and come back to this view.

const config = JSON.parse(document.getElementById("gridops-config").textContent);
export const settings = config;
let signingOut = false;

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function readCookie(name) {
  for (const part of document.cookie.split("; ")) {
    const [key, ...value] = part.split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

export function goToLogin() {
  if (signingOut) return;
  const here = window.location.pathname + window.location.search + window.location.hash;
  window.location.assign(`${config.loginPath}?next=${encodeURIComponent(here)}`);
}

export function describeError(body, status) {
  if (typeof body?.detail === "string") return body.detail;
  if (Array.isArray(body?.detail)) {
    return body.detail.map((d) => (d.field ? `${d.field}: ${d.msg}` : d.msg)).join("; ");
  }
  return `HTTP ${status}`;
}

/** An absolute URL for an API path (or a full `next` link) and query parameters. */
export function apiUrl(path, params = {}) {
  const full = /^https?:/.test(path) || path.startsWith(config.apiBase) ? path : config.apiBase + path;
  const url = new URL(full, window.location.href);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url.toString();
}

async function request(method, url, body, signal) {
  const headers = { Accept: "application/json, application/geo+json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = readCookie(config.csrfCookie) ?? "";
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    goToLogin();
    throw new ApiError("401", 401, null);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(describeError(data, response.status), response.status, data);
  return data;
}

export const getJSON = (path, params, signal) => request("GET", apiUrl(path, params), undefined, signal);
export const postJSON = (path, body) => request("POST", apiUrl(path), body);

/** End the session on the server, then show the login page. */
export async function signOut() {
  signingOut = true;
  try {
    await request("POST", apiUrl("/auth/logout"), undefined);
  } catch (error) {
    if (error.status !== 401) {
      signingOut = false;
      throw error;
    }
  }
  window.location.assign(config.loginPath);
}
