// The plans API (/api/v1/plans…): JSON calls through the command page's helpers (session
// cookie, CSRF header, readable errors, 401 → login) and multipart uploads for imports.

import { ApiError, apiUrl, describeError, getJSON, goToLogin, postJSON, readCookie, settings }
  from "../command/api.js";

export { ApiError, apiUrl, getJSON, postJSON, settings };

/** POST a FormData (file uploads) with the CSRF header; the JSON answer or an ApiError. */
export async function postForm(path, form) {
  const response = await fetch(apiUrl(path), {
    method: "POST", body: form,
    headers: { Accept: "application/json", "X-CSRF-Token": readCookie(settings.csrfCookie) ?? "" },
  });
  if (response.status === 401) {
    goToLogin();
    throw new ApiError("401", 401, null);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(describeError(data, response.status), response.status, data);
  return data;
}

const base = (id) => `/plans/${id}`;

/** Every call the page makes, named after what it does. */
export const plans = {
  list: (status) => getJSON("/plans", { status }),
  create: (body) => postJSON("/plans", body),
  importLayer: (form) => postForm("/plans/import", form),
  mergeLayers: (form) => postForm("/plans/merge-layers", form),
  get: (id) => getJSON(base(id)),
  grids: (id) => getJSON(`${base(id)}/grids`),
  cells: (id) => getJSON(`${base(id)}/cells`),
  buildings: (id) => getJSON(`${base(id)}/buildings`),
  metrics: (id) => getJSON(`${base(id)}/metrics`),
  diff: (id) => getJSON(`${base(id)}/diff`),
  assign: (id, moves) => postJSON(`${base(id)}/assign`, { moves }),
  split: (id, gridId, line) => postJSON(`${base(id)}/split`, { grid_id: gridId, line }),
  merge: (id, gridIds) => postJSON(`${base(id)}/merge`, { grid_ids: gridIds }),
  newGrid: (id, communityCode) => postJSON(`${base(id)}/grids`, { community_code: communityCode }),
  validate: (id) => postJSON(`${base(id)}/validate`, {}),
  approve: (id, comment) => postJSON(`${base(id)}/approve`, comment ? { comment } : {}),
  reject: (id, comment) => postJSON(`${base(id)}/reject`, { comment }),
  comment: (id, text) => postJSON(`${base(id)}/comments`, { text }),
  apply: (id, effectiveFrom) => postJSON(`${base(id)}/apply`,
    effectiveFrom ? { effective_from: effectiveFrom } : {}),
  comparisonUrl: (id) => apiUrl(`${base(id)}/comparison`),
};
