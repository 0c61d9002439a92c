"""Street-chief patrols (日巡): the configurable checklist (巡查清单, seeded with the
十有十无 items), each patrol's ticked items, who started a patrol, when each fix arrived,
problems reported during a patrol (incidents.patrol_id), the evaluation settings (one
row of JSON: cleaning limits, coverage radius and threshold, difficulty and score weights)
and `gridops_street_coverage`, the share of a street's length within a radius of a track.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

import json

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# 十无 (daily street-scene items) then 十有 (what a well-run street has): Beijing's
# 背街小巷环境整治 standard. Codes are stable; labels are data and may be edited.
CHECKLIST = [
    ("no_illegal_building", "十无", "无私搭乱建", "No illegal structures"),
    ("no_wall_openings", "十无", "无开墙打洞", "No openings knocked into walls"),
    ("no_disorderly_parking", "十无", "无乱停车", "No disorderly parking"),
    ("no_road_occupation", "十无", "无乱占道", "No occupation of the roadway"),
    ("no_loose_wires", "十无", "无乱搭架空线", "No loose overhead wires"),
    ("no_facade_damage", "十无", "无外立面破损", "No damaged facades"),
    ("no_illegal_signs", "十无", "无违规广告牌匾", "No illegal signs or billboards"),
    ("no_road_damage", "十无", "无道路破损", "No damaged road surface"),
    ("no_illegal_trading", "十无", "无违规经营", "No illegal trading"),
    ("no_piled_materials", "十无", "无堆物堆料", "No piled goods or materials"),
    ("has_chief", "十有", "有政府代表（街长、巷长）", "Has a chief (street or alley)"),
    ("has_council", "十有", "有自治共建理事会", "Has a residents' co-governance council"),
    ("has_property_manager", "十有", "有物业管理单位", "Has a property manager"),
    ("has_volunteers", "十有", "有社区志愿者服务团队", "Has a community volunteer team"),
    ("has_guidelines", "十有", "有街区治理导则和实施方案", "Has governance guidelines and a plan"),
    ("has_residents_pact", "十有", "有居民公约", "Has a residents' pact"),
    ("has_public_sign", "十有", "有责任公示牌", "Has its public duty sign"),
    ("has_facilities", "十有", "有配套设施", "Has supporting facilities"),
    ("has_greenery", "十有", "有绿植景观", "Has greenery"),
    ("has_culture", "十有", "有文化内涵", "Has cultural character"),
]

# Documented in docs/patrol-evaluation.md; editable through PUT /api/v1/patrol-settings.
SETTINGS = {
    "cleaning": {"max_accuracy_m": 50, "max_speed_mps": 12},
    "coverage": {"radius_m": 30, "daily_threshold": 0.8},
    "difficulty": {"length_weight": 0.2, "density_weight": 0.2, "mix_weight": 0.1,
                   "window_days": 90, "min": 0.8, "max": 1.5},
    "score": {"compliance_weight": 0.6, "coverage_weight": 0.2, "discovery_weight": 0.2},
    "excellent": {"top_share": 0.1, "min_score": 90},
}

STATEMENTS = [
    """
    CREATE TABLE checklist_items (
      code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,63}$'),
      item_group text NOT NULL,
      zh text NOT NULL CHECK (zh <> ''),
      en text NOT NULL CHECK (en <> ''),
      position integer NOT NULL,
      active boolean NOT NULL DEFAULT true,
      created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE patrol_checks (
      patrol_id bigint NOT NULL REFERENCES patrols(id) ON DELETE CASCADE,
      item_code text NOT NULL REFERENCES checklist_items(code),
      ok boolean NOT NULL,
      note text CHECK (length(note) <= 500),
      checked_at timestamptz NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (patrol_id, item_code)
    )
    """,
    "ALTER TABLE patrols ADD COLUMN user_id bigint REFERENCES users(id)",
    "CREATE INDEX patrols_street_idx ON patrols (street_id, started_at)",
    # one patrol under way per person at a time
    "CREATE UNIQUE INDEX patrols_one_active_idx ON patrols (person_id) WHERE status = 'active'",
    "ALTER TABLE patrol_points ADD COLUMN received_at timestamptz NOT NULL DEFAULT now()",
    "ALTER TABLE incidents ADD COLUMN patrol_id bigint REFERENCES patrols(id)",
    "CREATE INDEX incidents_patrol_idx ON incidents (patrol_id) WHERE patrol_id IS NOT NULL",
    "CREATE INDEX incidents_street_segment_idx ON incidents (street_id, reported_at)",
    """
    CREATE TABLE patrol_settings (
      one boolean PRIMARY KEY DEFAULT true CHECK (one),
      config jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object'),
      updated_at timestamptz NOT NULL DEFAULT now(),
      updated_by bigint REFERENCES users(id)
    )
    """,
    # Share (0..1) of `street`'s length within `radius_m` of `track` (any lines, measures
    # ignored), measured in the projected CRS `srid`; NULL for an empty street or track.
    """
    CREATE FUNCTION gridops_street_coverage(street geometry, track geometry,
                                            radius_m float8, srid integer)
    RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT CASE WHEN track IS NULL OR ST_IsEmpty(track) THEN 0.0 ELSE
        least(1.0, ST_Length(ST_Intersection(
          ST_Transform(street, srid),
          ST_Buffer(ST_Transform(ST_Force2D(track), srid), radius_m, 'quad_segs=16')))
          / nullif(ST_Length(ST_Transform(street, srid)), 0)) END
    $$
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    items = op.get_bind().exec_driver_sql
    for position, (code, group, zh, en) in enumerate(CHECKLIST, start=1):
        items("INSERT INTO checklist_items (code, item_group, zh, en, position) "
              "VALUES (%s, %s, %s, %s, %s)", (code, group, zh, en, position))
    items("INSERT INTO patrol_settings (config) VALUES (%s::jsonb)", (json.dumps(SETTINGS),))


def downgrade() -> None:
    for statement in (
        "DROP FUNCTION gridops_street_coverage(geometry, geometry, float8, integer)",
        "DROP TABLE patrol_settings",
        "DROP INDEX incidents_street_segment_idx",
        "ALTER TABLE incidents DROP COLUMN patrol_id",
        "ALTER TABLE patrol_points DROP COLUMN received_at",
        "DROP INDEX patrols_one_active_idx",
        "DROP INDEX patrols_street_idx",
        "ALTER TABLE patrols DROP COLUMN user_id",
        "DROP TABLE patrol_checks",
        "DROP TABLE checklist_items",
    ):
        op.execute(statement)
