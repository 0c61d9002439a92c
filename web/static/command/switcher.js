// The layer switcher: a checkbox per tile layer (and the base map when there is one);
// hidden layers are remembered.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import { setLayerVisible } from "./map.js";

const STORE_KEY = "gridops.hiddenLayers";
const hidden = new Set(JSON.parse(localStorage.getItem(STORE_KEY) || "[]"));

function toggle(map, name, visible) {
  if (name === "basemap") {
    map.setLayoutProperty("basemap", "visibility", visible ? "visible" : "none");
  } else {
    setLayerVisible(map, name, visible);
  }
  if (visible) hidden.delete(name);
  else hidden.add(name);
  localStorage.setItem(STORE_KEY, JSON.stringify([...hidden]));
}

function row(map, name) {
  const input = h("input", { type: "checkbox", checked: !hidden.has(name), dataset: { layer: name },
    onchange: (event) => toggle(map, name, event.target.checked) });
  return h("li", {}, h("label", {}, input, h("span", { class: `swatch swatch-${name}` }),
    h("span", { "data-i18n": `layers.${name}` }, t(`layers.${name}`))));
}

/** Fill #layers with one checkbox per layer in `names`; apply the remembered choices. */
export function buildSwitcher(map, names) {
  const all = map.getLayer("basemap") ? ["basemap", ...names] : names;
  fill(document.getElementById("layer-list"), all.map((name) => row(map, name)));
  for (const name of all) if (hidden.has(name)) toggle(map, name, false);
}
