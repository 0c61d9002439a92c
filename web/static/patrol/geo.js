// The phone's position: navigator.geolocation.watchPosition with high accuracy. A fix is
// recorded at most once per `fix_interval_s` (by the position's own timestamp, strictly
// increasing: the server identifies a fix by its time), with its accuracy.

const EARTH_M = 6_371_008.8;
const TOLERANCE_MS = 250; // a fix a little early (timer jitter) still counts as due

/** Great-circle distance in metres between two [lon, lat] points. */
export function distance([lon1, lat1], [lon2, lat2]) {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2
    + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.sqrt(a));
}

/** Length in metres of a line of [lon, lat] points. */
export function lineLength(coords) {
  let total = 0;
  for (let i = 1; i < coords.length; i += 1) total += distance(coords[i - 1], coords[i]);
  return total;
}

/** The time of a position: its own timestamp, unless it is implausible (a device clock
 * years off, a cached fix from long ago): then now. */
export function fixTime(position, now = Date.now()) {
  const at = Number(position.timestamp);
  return Number.isFinite(at) && Math.abs(at - now) < 120_000 ? at : now;
}

/** Whether a position at `at` (ms) is due after the last recorded fix at `lastAt`. */
export function due(at, lastAt, intervalS) {
  if (lastAt === null || lastAt === undefined) return true;
  return at > lastAt && at - lastAt >= intervalS * 1000 - TOLERANCE_MS;
}

export class Watch {
  /** `onPosition(position)` for every position; `onError(error)` for a failure. */
  constructor(onPosition, onError) {
    this.onPosition = onPosition;
    this.onError = onError;
    this.id = null;
  }

  get supported() {
    return "geolocation" in navigator;
  }

  start() {
    if (this.id !== null || !this.supported) return;
    this.id = navigator.geolocation.watchPosition(this.onPosition, this.onError,
      { enableHighAccuracy: true, maximumAge: 0, timeout: 60_000 });
  }

  stop() {
    if (this.id === null) return;
    navigator.geolocation.clearWatch(this.id);
    this.id = null;
  }
}
