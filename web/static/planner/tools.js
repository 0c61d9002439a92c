// The map tools: 选择 (click a grid), 涂刷 (click or drag over buildings and cells: the cells
// under the pointer are collected and sent as one reassignment per stroke), 分割 (click the
// vertices of a line, double-click or Enter to finish) and 合并 (click grids to pick them).

import { GRID_LAYERS, PAINT_LAYERS, showSketch, showStroke } from "./map.js";

export const TOOLS = ["select", "paint", "split", "merge"];
const STEP_PX = 4; // sample the stroke at least this often so fast drags miss no cell
const SAME_PX = 4; // a click this close to the last vertex adds none (the double-click)

/**
 * Pointer handling on `map` for the page `page`, which provides:
 * - editable(): whether edits are allowed now;
 * - paintTarget(): {id, community_code, colour} of the grid to paint into, or null;
 * - cellGrid(cellId), cellCommunity(cellId): where a cell is now;
 * - paint(cellIds), split(gridId, coordinates): send an edit;
 * - pickGrid(id | null, {toggle}): select (or toggle) a grid;
 * - hint(key, ...args): a short message next to the tools.
 */
export class Tools {
  constructor(map, page) {
    this.map = map;
    this.page = page;
    this.tool = "select";
    this.stroke = null;
    this.sketch = [];
    map.dragRotate.disable();
    map.touchZoomRotate.disableRotation();
    map.on("mousedown", (e) => this.down(e));
    map.on("mousemove", (e) => this.move(e));
    document.addEventListener("mouseup", () => this.up());
    map.on("click", (e) => this.click(e));
    map.on("dblclick", (e) => this.doubleClick(e));
  }

  /** Switch tool; drops an unfinished stroke or sketch. */
  set(tool) {
    this.tool = TOOLS.includes(tool) ? tool : "select";
    this.cancel();
    this.map.getCanvas().style.cursor = this.tool === "paint" || this.tool === "split" ? "crosshair" : "";
    return this.tool;
  }

  cancel() {
    if (this.stroke) this.map.dragPan.enable();
    this.stroke = null;
    this.sketch = [];
    showStroke(this.map, new Set());
    showSketch(this.map, []);
  }

  gridAt(point) {
    const [hit] = this.map.queryRenderedFeatures(point, { layers: GRID_LAYERS });
    return hit ? Number(hit.properties.id) : null;
  }

  // -- painting ---------------------------------------------------------------------------------

  down(e) {
    if (this.tool !== "paint" || e.originalEvent.button !== 0) return;
    e.preventDefault(); // no drag-pan: the drag paints
    if (!this.page.editable()) return;
    const target = this.page.paintTarget();
    if (!target) {
      this.page.hint("hint.pickTarget");
      return;
    }
    this.stroke = { target, cells: new Set(), skipped: 0, last: e.point };
    this.collect(e.point);
  }

  move(e) {
    if (!this.stroke) return;
    const { last } = this.stroke;
    const dx = e.point.x - last.x;
    const dy = e.point.y - last.y;
    const steps = Math.max(1, Math.ceil(Math.hypot(dx, dy) / STEP_PX));
    for (let i = 1; i <= steps; i += 1) {
      this.collect({ x: last.x + (dx * i) / steps, y: last.y + (dy * i) / steps });
    }
    this.stroke.last = e.point;
  }

  collect(point) {
    const { target, cells } = this.stroke;
    for (const f of this.map.queryRenderedFeatures([point.x, point.y], { layers: PAINT_LAYERS })) {
      const id = Number(f.layer.id === "cells-fill" ? f.properties.id : f.properties.cell_id);
      if (!Number.isFinite(id) || cells.has(id)) continue;
      if (this.page.cellCommunity(id) !== target.community_code) {
        this.stroke.skipped += 1;
        continue;
      }
      cells.add(id);
    }
    showStroke(this.map, cells, target.colour);
  }

  up() {
    const stroke = this.stroke;
    if (!stroke) return;
    this.stroke = null;
    showStroke(this.map, new Set());
    const ids = [...stroke.cells].filter((id) => this.page.cellGrid(id) !== stroke.target.id);
    if (ids.length) this.page.paint(ids, stroke.target.id);
    else this.page.hint(stroke.skipped ? "hint.otherCommunity" : "hint.nothingToPaint");
  }

  // -- clicks: select, merge, split ------------------------------------------------------------------

  click(e) {
    if (this.tool === "select" || this.tool === "merge") {
      this.page.pickGrid(this.gridAt(e.point), { toggle: this.tool === "merge" });
    } else if (this.tool === "split" && this.page.editable()) {
      const last = this.sketch.at(-1);
      if (last) {
        const p = this.map.project(last);
        if (Math.hypot(p.x - e.point.x, p.y - e.point.y) < SAME_PX) return;
      }
      if (!this.sketch.length) this.sketchGrid = this.page.splitGrid?.() ?? this.gridAt(e.point);
      this.sketch.push([e.lngLat.lng, e.lngLat.lat]);
      showSketch(this.map, this.sketch);
      this.page.hint(this.sketch.length > 1 ? "hint.splitFinish" : "hint.splitNext");
    }
  }

  doubleClick(e) {
    if (this.tool !== "split") return;
    e.preventDefault(); // no zoom: the double-click ends the line
    this.finishSplit();
  }

  /** Send the sketched line (two or more vertices) as a split of its grid. */
  finishSplit() {
    if (this.tool !== "split") return;
    const line = this.sketch;
    const grid = this.sketchGrid;
    if (line.length < 2) {
      this.page.hint("hint.splitShort");
      return;
    }
    if (grid === null || grid === undefined) {
      this.page.hint("hint.splitNoGrid");
      this.cancel();
      return;
    }
    this.sketch = [];
    this.page.split(grid, line).finally(() => showSketch(this.map, []));
  }
}
