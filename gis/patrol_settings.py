"""Patrol settings: GPS cleaning limits, the coverage radius and daily threshold, the
difficulty coefficient and score weights of the evaluation (周查/月评) and what makes a
月度优秀街巷长. One row of JSON (`patrol_settings`), read per request, edited by admins;
every key is checked against its range, and the whole document is replaced at once."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from gis import audit
from gis.errors import InvalidInput

# (section, key) -> (lowest, highest) allowed value
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("cleaning", "max_accuracy_m"): (5, 500),
    ("cleaning", "max_speed_mps"): (1, 60),
    ("coverage", "radius_m"): (5, 200),
    ("coverage", "daily_threshold"): (0, 1),
    ("difficulty", "length_weight"): (0, 5),
    ("difficulty", "density_weight"): (0, 5),
    ("difficulty", "mix_weight"): (0, 5),
    ("difficulty", "window_days"): (7, 730),
    ("difficulty", "min"): (0.1, 1),
    ("difficulty", "max"): (1, 10),
    ("score", "compliance_weight"): (0, 1),
    ("score", "coverage_weight"): (0, 1),
    ("score", "discovery_weight"): (0, 1),
    ("excellent", "top_share"): (0, 1),
    ("excellent", "min_score"): (0, 100),
}


def current(conn: Connection) -> dict[str, Any]:
    """The settings in force."""
    return dict(conn.scalar(text("SELECT config FROM patrol_settings")))


def check(config: Any) -> dict[str, dict[str, Any]]:
    """`config` as a complete, valid settings document; InvalidInput naming the first
    missing, unknown or out-of-range key (e.g. `coverage.radius_m`)."""
    if not isinstance(config, dict):
        raise InvalidInput("settings must be an object of sections", field="config")
    sections = {section for section, _ in RANGES}
    for section in config:
        if section not in sections:
            raise InvalidInput(f"unknown section {section!r}; expected "
                               f"{', '.join(sorted(sections))}", field=str(section))
    result: dict[str, dict[str, Any]] = {}
    for (section, key), (low, high) in RANGES.items():
        name = f"{section}.{key}"
        part = config.get(section)
        if not isinstance(part, dict) or key not in part:
            raise InvalidInput(f"{name} is missing", field=name)
        value = part[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{name} must be a number", field=name)
        if not low <= value <= high:
            raise InvalidInput(f"{name} is {value}; it must be between {low} and {high}",
                               field=name)
        result.setdefault(section, {})[key] = value
    for section, part in config.items():
        for key in part:
            if (section, key) not in RANGES:
                raise InvalidInput(f"unknown setting {section}.{key}", field=f"{section}.{key}")
    if result["difficulty"]["min"] > result["difficulty"]["max"]:
        raise InvalidInput("difficulty.min is above difficulty.max", field="difficulty.min")
    score = result["score"]
    if abs(sum(score.values()) - 1) > 1e-9:
        raise InvalidInput(f"the score weights add up to {sum(score.values()):g}; they must "
                           "add up to 1", field="score")
    return result


def replace(conn: Connection, config: Any, by: audit.Actor) -> dict[str, Any]:
    """Replace the settings with `config` (checked; caller commits); audited with the
    settings before and after."""
    new = check(config)
    before = current(conn)
    conn.execute(text("UPDATE patrol_settings SET config = CAST(:c AS jsonb), "
                      "updated_at = now(), updated_by = :u"),
                 {"c": json.dumps(new), "u": by.user_id})
    audit.record(conn, by, action="patrol_settings.replace", object_type="patrol_settings",
                 object_id="1", before=before, after=new)
    return new
