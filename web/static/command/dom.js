// Small DOM helpers: elements are built with text nodes (never innerHTML with data).

/** An element: h("td", {class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) setAttr(element, key, value);
  append(element, children);
  return element;
}

function setAttr(element, key, value) {
  if (value === undefined || value === null || value === false) return;
  if (key.startsWith("on") && typeof value === "function") {
    element.addEventListener(key.slice(2), value);
  } else if (key === "dataset") {
    Object.assign(element.dataset, value);
  } else if (value === true) {
    element.setAttribute(key, "");
  } else {
    element.setAttribute(key, String(value));
  }
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Call `fn` at most once per `ms`, after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
