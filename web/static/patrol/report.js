// Report a problem (上报问题): class from the catalog (GET /api/v1/event-classes), a
// description, a photo from the camera, and the position — the latest fix, which the person
// may move by dragging the red marker or tapping the map.

import { $, h } from "./dom.js";
import { t } from "./i18n.js";

const round6 = (x) => Math.round(x * 1e6) / 1e6;

export class ReportForm {
  /** `map`: the PatrolMap; `onSubmit(report)` queues it (and may throw to refuse it). */
  constructor({ map, onSubmit, maxBytes }) {
    this.map = map;
    this.onSubmit = onSubmit;
    this.maxBytes = maxBytes;
    this.classes = [];
    this.position = null; // [lon, lat]
    this.moved = false;
    this.active = false;
    this.form = $("#report-form");
    this.select = $("#report-class");
    this.error = $("#report-error");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    $("#report-photo").addEventListener("change", () => this.renderPhoto());
  }

  renderPhoto() {
    const photo = $("#report-photo").files?.[0];
    $("#report-photo-name").textContent = photo ? photo.name : t("report.noPhoto");
  }

  /** The catalog's classes (events first) as a grouped select. */
  setClasses(classes) {
    this.classes = classes ?? [];
    const chosen = this.select.value;
    const groups = new Map();
    for (const c of this.classes) {
      const label = `${t(`report.${c.kind}`)} · ${c.major_name}`;
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(c);
    }
    this.select.replaceChildren(
      h("option", { value: "" }, t("report.pick")),
      ...[...groups].map(([label, list]) => h("optgroup", { label },
        list.map((c) => h("option", { value: `${c.kind}:${c.code}` }, `${c.code} ${c.name}`)))));
    this.select.value = chosen;
  }

  /** Show the form's marker at the latest fix (or keep where it was moved to). */
  open(latest) {
    this.active = true;
    if (!this.moved) this.position = latest ?? this.position;
    this.map.onMapTap((lngLat) => this.moveTo([lngLat.lng, lngLat.lat]));
    if (this.position) this.map.showMarker(this.position, (l) => this.moveTo([l.lng, l.lat]));
    this.renderPosition();
  }

  close() {
    this.active = false;
    this.map.onMapTap(null);
    this.map.hideMarker();
  }

  /** A new fix: the marker follows it until the person moves it by hand. */
  latest(lonLat) {
    if (this.moved || !this.active) {
      if (!this.position) this.position = lonLat;
      return;
    }
    this.position = lonLat;
    this.map.showMarker(lonLat, (l) => this.moveTo([l.lng, l.lat]));
    this.renderPosition();
  }

  moveTo(lonLat) {
    this.position = lonLat;
    this.moved = true;
    this.map.showMarker(lonLat, (l) => this.moveTo([l.lng, l.lat]));
    this.renderPosition();
  }

  renderPosition() {
    this.renderPhoto();
    $("#report-position").textContent = this.position
      ? t("report.position", round6(this.position[0]).toFixed(6),
        round6(this.position[1]).toFixed(6), this.moved)
      : t("report.noPosition");
  }

  async submit() {
    const [kind, code] = this.select.value.split(":");
    const description = $("#report-description").value.trim();
    const photo = $("#report-photo").files?.[0] ?? null;
    let problem = null;
    if (!code) problem = t("report.needClass");
    else if (!description) problem = t("report.needDescription");
    else if (!this.position) problem = t("report.needPosition");
    else if (photo && photo.size > this.maxBytes) {
      problem = t("report.photoTooBig", Math.floor(this.maxBytes / 1048576));
    }
    this.error.textContent = problem ?? "";
    if (problem) return;
    const eventClass = this.classes.find((c) => c.kind === kind && c.code === code);
    const button = $("#report-submit");
    button.disabled = true;
    try {
      await this.onSubmit({ event_kind: kind, event_code: code, event_name: eventClass?.name,
        description, lon: round6(this.position[0]), lat: round6(this.position[1]), photo });
      this.form.reset();
      this.select.value = "";
      this.moved = false;
      this.renderPhoto();
      this.renderPosition();
    } catch (error) {
      this.error.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  /** The reports of this patrol: [{key, event_code, event_name, description, incidentId,
   * photo}] newest first. */
  renderList(reports) {
    $("#report-list").replaceChildren(...[...(reports ?? [])].reverse().map((r) => h("li",
      { class: "report-item", dataset: { key: r.key } },
      h("b", {}, `${r.event_code} ${r.event_name ?? ""}`),
      h("span", { class: "muted" }, r.incidentId ? ` #${r.incidentId}` : ` · ${t("report.waiting")}`),
      r.photo ? h("span", { class: "muted" }, ` · ${t("report.withPhoto")}`) : null,
      h("p", {}, r.description))));
  }
}
