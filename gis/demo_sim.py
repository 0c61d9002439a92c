"""Demo only: keep the demo city's teams on the move, so the command map is alive and
recommendations find fresh positions. Each tick every team on duty (available or busy, with
a position) drives along the road graph — busy teams towards the incident of their active
dispatch, available teams towards a random point a few kilometres away — and reports a fix
through the normal position intake (`gis.teams.add_positions`), so the history, staleness
and live events behave as they do with real devices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text

from gis import roadgraph, teams
from gis.audit import Actor
from gis.auth import Principal

SPEED_MPS = 8.0  # about 30 km/h in town
ROAM_DEG = 0.02  # available teams head for a point up to ~2 km away
TRIP_BUDGET_S = 3600.0
DEVICE = Actor("demo-simulator")

_ON_DUTY = text("""
    SELECT t.id, ST_X(t.position) AS lon, ST_Y(t.position) AS lat, d.incident_id,
           ST_X(i.geom) AS to_lon, ST_Y(i.geom) AS to_lat
    FROM teams t
    LEFT JOIN dispatches d ON d.team_id = t.id
     AND d.status IN ('dispatched', 'accepted', 'en_route')
    LEFT JOIN incidents i ON i.id = d.incident_id
    WHERE t.status IN ('available', 'busy') AND t.position IS NOT NULL
    ORDER BY t.id
""")


@dataclass
class Trip:
    """A team's way along the roads: its points, the metres to each, how far it has come,
    and the incident it heads for (None when roaming)."""

    coords: npt.NDArray[np.float64]
    cum_m: npt.NDArray[np.float64]
    incident_id: int | None
    done_m: float = 0.0

    @property
    def finished(self) -> bool:
        return self.done_m >= float(self.cum_m[-1])

    def advance(self, metres: float) -> tuple[float, float]:
        """Move on `metres` and return where the team is now."""
        self.done_m = min(self.done_m + metres, float(self.cum_m[-1]))
        k = int(np.searchsorted(self.cum_m, self.done_m, side="right"))
        if k >= len(self.coords):
            return float(self.coords[-1, 0]), float(self.coords[-1, 1])
        span = self.cum_m[k] - self.cum_m[k - 1]
        f = 0.0 if span <= 0 else (self.done_m - self.cum_m[k - 1]) / span
        x, y = self.coords[k - 1] + f * (self.coords[k] - self.coords[k - 1])
        return float(x), float(y)


def _trip(coords: list[tuple[float, float]], incident_id: int | None) -> Trip:
    xy = np.asarray(coords, dtype=float)
    step = roadgraph.ground_metres(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])
    return Trip(xy, np.concatenate([[0.0], np.cumsum(step)]), incident_id)


class Simulator:
    """Trips per team, kept between ticks."""

    def __init__(self, seed: int = 0, speed_mps: float = SPEED_MPS) -> None:
        self.rng = np.random.default_rng(seed)
        self.speed_mps = speed_mps
        self.trips: dict[int, Trip] = {}
        self.device = Principal(
            user_id=0, username="demo-simulator", display_name="demo simulator",
            roles=frozenset({"admin"}), scope_codes=(), department_id=None, person_id=None,
            session_id="demo-simulator", session_kind="bearer",
            expires_at=datetime.now(UTC) + timedelta(days=3650))

    def _plan(self, graph: roadgraph.RoadGraph, row: dict[str, float | None]) -> Trip | None:
        lon, lat = float(row["lon"] or 0), float(row["lat"] or 0)
        if row["incident_id"] is not None:
            to = (float(row["to_lon"] or 0), float(row["to_lat"] or 0))
        else:
            to = (lon + self.rng.uniform(-ROAM_DEG, ROAM_DEG),
                  lat + self.rng.uniform(-ROAM_DEG, ROAM_DEG))
        coords = graph.route(lon, lat, *to, budget_s=TRIP_BUDGET_S)
        if coords is None or len(coords) < 2:
            return None
        incident = row["incident_id"]
        return _trip(coords, None if incident is None else int(incident))

    def tick(self, conn: Connection, seconds: float, now: datetime | None = None) -> int:
        """Move every team on duty by `seconds` of driving and report its fix (caller
        commits). Returns the number of teams that reported."""
        now = now or datetime.now(UTC)
        graph = roadgraph.graph_for(conn)
        reported = 0
        for row in conn.execute(_ON_DUTY).mappings():
            team_id = int(row["id"])
            trip = self.trips.get(team_id)
            if trip is None or trip.finished or trip.incident_id != row["incident_id"]:
                trip = self._plan(graph, dict(row))
                if trip is None:
                    self.trips.pop(team_id, None)
                    continue
                self.trips[team_id] = trip
            lon, lat = trip.advance(self.speed_mps * seconds)
            teams.add_positions(conn, team_id, [teams.Fix(
                at=now, lon=lon, lat=lat, accuracy_m=5.0, speed_mps=self.speed_mps)],
                DEVICE, now, writer=self.device)
            reported += 1
        return reported
