"""ORM models of the core schema, for queries and writes from Python.

The migrations are the source of truth for DDL: CHECK and exclusion constraints,
indexes, triggers and SQL functions live there (migrations/versions/0001_core_schema.py)
and are never created from these models. The models mirror each table's columns, types,
nullability, keys and server defaults. Generated columns are declared `Computed(...)`
with the migration's expression, so the ORM reads them but never writes them.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from geoalchemy2 import Geometry, WKBElement, WKTElement
from sqlalchemy import (
    REAL,
    BigInteger,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A geometry as written (WKT) or as read back (WKB).
GeomValue = WKBElement | WKTElement

NOW = text("now()")
FALSE = text("false")
TRUE = text("true")
EMPTY_OBJECT = text("'{}'::jsonb")
EMPTY_ARRAY = text("'[]'::jsonb")
NO_TEXTS = text("'{}'::text[]")
EPOCH = text("'2000-01-01T00:00:00+08'::timestamptz")


def _geometry(geometry_type: str) -> Geometry:
    """A column type `geometry(<geometry_type>, 4326)`; its GiST index is in the migration."""
    return Geometry(geometry_type=geometry_type, srid=4326, spatial_index=False)


class Base(DeclarativeBase):
    """Declarative base of every GridOps table."""

    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        str: Text,
        datetime: DateTime(timezone=True),
        float: Double,
        time: Time,
    }


# -- jurisdictions, people, departments, users -------------------------------------------


class Jurisdiction(Base):
    """A district (区), street office (街道·乡镇) or community (社区·村), versioned."""

    __tablename__ = "jurisdictions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[str]
    code: Mapped[str]
    name: Mapped[str]
    kind: Mapped[str | None]
    parent_code: Mapped[str | None] = mapped_column(
        Computed(
            "CASE level WHEN 'street' THEN left(code, 6) WHEN 'community' THEN left(code, 9) END",
            persisted=True,
        )
    )
    # Generated columns are nullable in the DDL, though these never yield NULL.
    district_code: Mapped[str] = mapped_column(
        Computed("left(code, 6)", persisted=True), nullable=False
    )
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTIPOLYGON"))
    valid_from: Mapped[datetime] = mapped_column(server_default=EPOCH)
    valid_to: Mapped[datetime | None]
    source: Mapped[str | None]
    is_synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class Person(Base):
    """A street chief (街巷长), steward (小巷管家) or grid worker (网格员)."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str]
    phone: Mapped[str | None]
    post: Mapped[str | None]
    organisation: Mapped[str | None]
    district_code: Mapped[str]
    is_synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class Department(Base):
    """A department that answers whistles (1+5+N), at district or street level."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    dept_type: Mapped[str]
    tier: Mapped[str]
    jurisdiction_code: Mapped[str]
    district_code: Mapped[str] = mapped_column(
        Computed("left(jurisdiction_code, 6)", persisted=True), nullable=False
    )
    phone: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class User(Base):
    """A login with roles and a jurisdiction scope."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(unique=True)
    display_name: Mapped[str | None]
    password_hash: Mapped[str]
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    scope_codes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=NO_TEXTS)
    department_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("departments.id"))
    person_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("people.id"))
    is_active: Mapped[bool] = mapped_column(server_default=TRUE)
    is_demo: Mapped[bool] = mapped_column(server_default=FALSE)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)
    password_changed_at: Mapped[datetime] = mapped_column(server_default=NOW)

    department: Mapped[Department | None] = relationship()
    person: Mapped[Person | None] = relationship()


class AuthSession(Base):
    """A login: a bearer token or a browser cookie, until it expires or is revoked."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    kind: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    client_ip: Mapped[str | None]
    user_agent: Mapped[str | None]


class LoginFailure(Base):
    """A failed login attempt (logins are throttled on recent failures)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    username: Mapped[str]
    client_ip: Mapped[str]


class JurisdictionPart(Base):
    """A subdivided piece of a jurisdiction for fast point lookups (maintained by trigger)."""

    __tablename__ = "jurisdiction_parts"
    __mapper_args__ = {"primary_key": ["jurisdiction_id", "geom"]}  # noqa: RUF012

    jurisdiction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jurisdictions.id", ondelete="CASCADE"))
    level: Mapped[str]
    code: Mapped[str]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    geom: Mapped[GeomValue] = mapped_column(Geometry("POLYGON", srid=4326))


class GridPart(Base):
    """A subdivided piece of a grid for fast point lookups (maintained by trigger)."""

    __tablename__ = "grid_parts"
    __mapper_args__ = {"primary_key": ["grid_id", "geom"]}  # noqa: RUF012

    grid_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("grids.id", ondelete="CASCADE"))
    code: Mapped[str]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    geom: Mapped[GeomValue] = mapped_column(Geometry("POLYGON", srid=4326))


class CatalogInfo(Base):
    """The loaded event catalog's name, department types and work calendar."""

    __tablename__ = "catalogs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    format: Mapped[str]
    synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    department_types: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    calendar: Mapped[dict[str, Any]] = mapped_column(JSONB)
    loaded_at: Mapped[datetime] = mapped_column(server_default=NOW)
    loaded_by: Mapped[str]


# -- grids and grid plans ----------------------------------------------------------------


class GridPlan(Base):
    """A planner's proposal for a community's grids; never live until applied."""

    __tablename__ = "grid_plans"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=text("'draft'"))
    community_codes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    district_code: Mapped[str]
    author_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    reviewer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    effective_from: Mapped[datetime | None]
    comments: Mapped[list[Any]] = mapped_column(JSONB, server_default=EMPTY_ARRAY)
    validation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(server_default=NOW)
    applied_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(server_default=text("'live'"))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    revision: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    validated_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]


class Grid(Base):
    """A grid (全科网格), versioned; its parent codes derive from its 15-digit code."""

    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str]
    name: Mapped[str | None]
    community_code: Mapped[str] = mapped_column(
        Computed("left(code, 12)", persisted=True), nullable=False
    )
    street_code: Mapped[str] = mapped_column(
        Computed("left(code, 9)", persisted=True), nullable=False
    )
    district_code: Mapped[str] = mapped_column(
        Computed("left(code, 6)", persisted=True), nullable=False
    )
    households: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    population: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTIPOLYGON"))
    valid_from: Mapped[datetime] = mapped_column(server_default=EPOCH)
    valid_to: Mapped[datetime | None]
    plan_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("grid_plans.id"))
    source: Mapped[str | None]
    is_synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class GridPlanGrid(Base):
    """One proposed grid of a plan (new, or redrawing `source_grid_id`)."""

    __tablename__ = "grid_plan_grids"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("grid_plans.id", ondelete="CASCADE")
    )
    code: Mapped[str | None]
    name: Mapped[str | None]
    community_code: Mapped[str]
    households: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    source_grid_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("grids.id"))
    geom: Mapped[GeomValue | None] = mapped_column(_geometry("MULTIPOLYGON"), nullable=True)
    buildings: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)

    plan: Mapped[GridPlan] = relationship()


class GridPlanCell(Base):
    """An atomic piece of a plan's communities (street block x grid x building Voronoi
    cell) that a planner moves between the plan's grids."""

    __tablename__ = "grid_plan_cells"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("grid_plans.id", ondelete="CASCADE"))
    plan_grid_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("grid_plan_grids.id", ondelete="SET NULL"))
    community_code: Mapped[str]
    building_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("buildings.id", ondelete="SET NULL"))
    households: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTIPOLYGON"))


class GridAssignment(Base):
    """A person working a grid (grid worker or leader) over a period."""

    __tablename__ = "grid_assignments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    grid_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("grids.id"))
    person_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("people.id"))
    role: Mapped[str] = mapped_column(server_default=text("'grid_worker'"))
    valid_from: Mapped[datetime] = mapped_column(server_default=NOW)
    valid_to: Mapped[datetime | None]

    grid: Mapped[Grid] = relationship()
    person: Mapped[Person] = relationship()


# -- buildings and streets ---------------------------------------------------------------


class Building(Base):
    """A building (楼栋) footprint with its households and floors."""

    __tablename__ = "buildings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str | None] = mapped_column(unique=True)
    name: Mapped[str | None]
    address: Mapped[str | None]
    district_code: Mapped[str]
    grid_code: Mapped[str | None]
    floors: Mapped[int | None] = mapped_column(SmallInteger)
    households: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    use: Mapped[str | None]
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTIPOLYGON"))
    source: Mapped[str | None]
    is_synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class BuildingShare(Base):
    """The share of a straddling building's area inside one jurisdiction or grid."""

    __tablename__ = "building_shares"

    building_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("buildings.id", ondelete="CASCADE"), primary_key=True
    )
    level: Mapped[str] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(primary_key=True)
    share: Mapped[float]
    area_m2: Mapped[float | None]

    building: Mapped[Building] = relationship()


class Street(Base):
    """A named street or alley (街巷) as lines."""

    __tablename__ = "streets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str | None] = mapped_column(unique=True)
    name: Mapped[str]
    road_class: Mapped[str]
    district_code: Mapped[str]
    street_office_code: Mapped[str | None]
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTILINESTRING"))
    source: Mapped[str | None]
    is_synthetic: Mapped[bool] = mapped_column(server_default=FALSE)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class StreetAssignment(Base):
    """A street chief, alley chief or steward on a street over a period."""

    __tablename__ = "street_assignments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    street_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("streets.id"))
    person_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("people.id"))
    role: Mapped[str]
    valid_from: Mapped[datetime] = mapped_column(server_default=NOW)
    valid_to: Mapped[datetime | None]

    street: Mapped[Street] = relationship()
    person: Mapped[Person] = relationship()


# -- road graph (pgRouting conventions) --------------------------------------------------


class RoadNode(Base):
    """A road graph vertex; ids are assigned by the graph builder, not a sequence."""

    __tablename__ = "road_nodes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    geom: Mapped[GeomValue] = mapped_column(_geometry("POINT"))
    district_code: Mapped[str]


class RoadEdge(Base):
    """A road graph edge; costs in seconds, a negative cost closes that direction."""

    __tablename__ = "road_edges"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[int] = mapped_column(BigInteger, ForeignKey("road_nodes.id"))
    target: Mapped[int] = mapped_column(BigInteger, ForeignKey("road_nodes.id"))
    street_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("streets.id", ondelete="SET NULL")
    )
    name: Mapped[str | None]
    road_class: Mapped[str]
    length_m: Mapped[float]
    speed_kmh: Mapped[float]
    cost: Mapped[float]
    reverse_cost: Mapped[float]
    geom: Mapped[GeomValue] = mapped_column(_geometry("LINESTRING"))
    district_code: Mapped[str]


# -- teams -------------------------------------------------------------------------------


class Team(Base):
    """A field team of a department, with its capabilities, status and last position."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]
    department_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("departments.id"))
    capabilities: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=NO_TEXTS)
    home_code: Mapped[str]
    district_code: Mapped[str] = mapped_column(
        Computed("left(home_code, 6)", persisted=True), nullable=False
    )
    status: Mapped[str] = mapped_column(server_default=text("'off_duty'"))
    shift_start: Mapped[time | None]
    shift_end: Mapped[time | None]
    members: Mapped[int | None] = mapped_column(SmallInteger)
    phone: Mapped[str | None]
    position: Mapped[GeomValue | None] = mapped_column(_geometry("POINT"))
    position_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=NOW)

    department: Mapped[Department] = relationship()


class TeamPosition(Base):
    """One reported position of a team (history)."""

    __tablename__ = "team_positions"

    team_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("teams.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    geom: Mapped[GeomValue] = mapped_column(_geometry("POINT"))
    accuracy_m: Mapped[float | None] = mapped_column(REAL)
    speed_mps: Mapped[float | None] = mapped_column(REAL)
    received_at: Mapped[datetime] = mapped_column(server_default=NOW)
    district_code: Mapped[str]


# -- event catalog, incidents and their workflow -----------------------------------------


class EventClass(Base):
    """A catalog class of event (事件) or component (部件) with its departments and limits."""

    __tablename__ = "event_classes"
    __table_args__ = (UniqueConstraint("kind", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str]
    code: Mapped[str]
    major_code: Mapped[str] = mapped_column(
        Computed("left(code, 2)", persisted=True), nullable=False
    )
    major_name: Mapped[str]
    name: Mapped[str]
    departments: Mapped[list[Any]] = mapped_column(JSONB, server_default=EMPTY_ARRAY)
    time_limits: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    default_whistle: Mapped[str | None]
    active: Mapped[bool] = mapped_column(server_default=TRUE)


class Incident(Base):
    """A reported incident with its placement stored at insert time."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    source: Mapped[str]
    event_class_id: Mapped[int] = mapped_column(Integer, ForeignKey("event_classes.id"))
    description: Mapped[str | None]
    address: Mapped[str | None]
    reporter_name: Mapped[str | None]
    reporter_phone: Mapped[str | None]
    reported_at: Mapped[datetime] = mapped_column(server_default=NOW)
    received_at: Mapped[datetime] = mapped_column(server_default=NOW)
    geom: Mapped[GeomValue] = mapped_column(_geometry("POINT"))
    input_crs: Mapped[str] = mapped_column(server_default=text("'wgs84'"))
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    district_code: Mapped[str]
    street_code: Mapped[str | None]
    community_code: Mapped[str | None]
    grid_code: Mapped[str | None]
    grid_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("grids.id"))
    building_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("buildings.id", ondelete="SET NULL")
    )
    street_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("streets.id", ondelete="SET NULL")
    )
    chief_person_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("people.id"))
    is_joint: Mapped[bool] = mapped_column(server_default=FALSE)
    joint: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    supervised: Mapped[bool] = mapped_column(server_default=FALSE)
    created_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=NOW)
    escalation_level: Mapped[str | None]
    escalated_at: Mapped[datetime | None]
    patrol_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("patrols.id"))

    event_class: Mapped[EventClass] = relationship()


class CaseEvent(Base):
    """One step of an incident's workflow history."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("incidents.id"))
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    action: Mapped[str]
    from_status: Mapped[str | None]
    to_status: Mapped[str | None]
    reason: Mapped[str | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)
    district_code: Mapped[str]

    incident: Mapped[Incident] = relationship()


class Whistle(Base):
    """A whistle (吹哨) blown on an incident, summoning departments."""

    __tablename__ = "whistles"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("incidents.id"))
    kind: Mapped[str]
    blown_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    blown_at: Mapped[datetime] = mapped_column(server_default=NOW)
    required_arrival_s: Mapped[int] = mapped_column(Integer, server_default=text("1800"))
    jurisdiction_codes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=NO_TEXTS)
    note: Mapped[str | None]
    district_code: Mapped[str]

    incident: Mapped[Incident] = relationship()


class WhistleSummons(Base):
    """A department summoned by a whistle, for one jurisdiction."""

    __tablename__ = "whistle_summons"

    whistle_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("whistles.id", ondelete="CASCADE"), primary_key=True
    )
    department_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("departments.id"), primary_key=True
    )
    jurisdiction_code: Mapped[str]

    whistle: Mapped[Whistle] = relationship()
    department: Mapped[Department] = relationship()


class Dispatch(Base):
    """A team assigned to an incident, with a timestamp per step (报到 is on_scene_at)."""

    __tablename__ = "dispatches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("incidents.id"))
    whistle_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("whistles.id"))
    team_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("teams.id"))
    status: Mapped[str] = mapped_column(server_default=text("'dispatched'"))
    dispatched_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    dispatched_at: Mapped[datetime] = mapped_column(server_default=NOW)
    accepted_at: Mapped[datetime | None]
    en_route_at: Mapped[datetime | None]
    on_scene_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    declined_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    reason: Mapped[str | None]
    override_reason: Mapped[str | None]
    eta_s: Mapped[int | None] = mapped_column(Integer)
    district_code: Mapped[str]
    out_of_remit: Mapped[bool] = mapped_column(server_default=FALSE)

    incident: Mapped[Incident] = relationship()
    team: Mapped[Team] = relationship()


class DispatchEvent(Base):
    """One step of a dispatch (accepted, en route, on scene …) with its actor."""

    __tablename__ = "dispatch_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("dispatches.id"))
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    from_status: Mapped[str | None]
    to_status: Mapped[str]
    reason: Mapped[str | None]


class ExtensionRequest(Base):
    """A request to extend a stage deadline (延期), approved or rejected by an operator."""

    __tablename__ = "extension_requests"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("incidents.id"))
    stage: Mapped[str]
    value: Mapped[float]
    unit: Mapped[str]
    reason: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    requested_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(server_default=NOW)
    decided_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None]
    old_deadline: Mapped[datetime | None]
    new_deadline: Mapped[datetime | None]
    district_code: Mapped[str]


class DepartmentRating(Base):
    """A street office's monthly rating of a department (reverse evaluation), 0–100."""

    __tablename__ = "department_ratings"
    __table_args__ = (UniqueConstraint("department_id", "street_code", "period"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    department_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("departments.id"))
    street_code: Mapped[str]
    period: Mapped[date]
    score: Mapped[float]
    comment: Mapped[str | None]
    rated_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    rated_at: Mapped[datetime] = mapped_column(server_default=NOW)


class IncidentFollowup(Base):
    """The follow-up (回访) result of a closed incident: responded, resolved, satisfaction."""

    __tablename__ = "incident_followups"

    incident_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("incidents.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    responded: Mapped[bool]
    resolved: Mapped[bool]
    satisfaction: Mapped[str]
    note: Mapped[str | None]
    recorded_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))


class LiveEvent(Base):
    """A change notification kept for replay by the live feed (Last-Event-ID)."""

    __tablename__ = "live_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    type: Mapped[str]
    codes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=NO_TEXTS)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=EMPTY_OBJECT)


class RoadGraphState(Base):
    """The road graph's version, bumped by every change to road_edges (one row)."""

    __tablename__ = "road_graph_state"

    one: Mapped[bool] = mapped_column(primary_key=True, server_default=TRUE)
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    changed_at: Mapped[datetime] = mapped_column(server_default=NOW)


# -- joint zones, patrols ----------------------------------------------------------------


class JointZone(Base):
    """A joint zone (联合哨) along the shared boundary of two jurisdictions (code_a < code_b)."""

    __tablename__ = "joint_zones"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[str]
    code_a: Mapped[str]
    code_b: Mapped[str]
    origin: Mapped[str] = mapped_column(server_default=text("'derived'"))
    width_m: Mapped[float | None]
    district_code: Mapped[str] = mapped_column(
        Computed("left(code_a, 6)", persisted=True), nullable=False
    )
    geom: Mapped[GeomValue] = mapped_column(_geometry("MULTIPOLYGON"))
    created_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class Patrol(Base):
    """A daily patrol (日巡) of a street by a person; track is a LineStringM."""

    __tablename__ = "patrols"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    person_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("people.id"))
    street_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("streets.id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(server_default=text("'active'"))
    track: Mapped[GeomValue | None] = mapped_column(_geometry("LINESTRINGM"))
    coverage: Mapped[float | None] = mapped_column(REAL)
    checklist: Mapped[list[Any]] = mapped_column(JSONB, server_default=EMPTY_ARRAY)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    district_code: Mapped[str]
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))

    person: Mapped[Person] = relationship()
    street: Mapped[Street] = relationship()


class PatrolPoint(Base):
    """One GPS fix of a patrol, kept or dropped (with the reason)."""

    __tablename__ = "patrol_points"

    patrol_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("patrols.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(primary_key=True)
    geom: Mapped[GeomValue] = mapped_column(_geometry("POINT"))
    accuracy_m: Mapped[float | None] = mapped_column(REAL)
    kept: Mapped[bool] = mapped_column(server_default=TRUE)
    drop_reason: Mapped[str | None]
    district_code: Mapped[str]
    received_at: Mapped[datetime] = mapped_column(server_default=NOW)

    patrol: Mapped[Patrol] = relationship()


class ChecklistItem(Base):
    """One item of the patrol checklist (巡查清单), e.g. 无乱停车 of the 十有十无."""

    __tablename__ = "checklist_items"

    code: Mapped[str] = mapped_column(primary_key=True)
    item_group: Mapped[str]
    zh: Mapped[str]
    en: Mapped[str]
    position: Mapped[int]
    active: Mapped[bool] = mapped_column(server_default=TRUE)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)


class PatrolCheck(Base):
    """A checklist item as ticked on one patrol (the last tick wins), with its note."""

    __tablename__ = "patrol_checks"

    patrol_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("patrols.id", ondelete="CASCADE"), primary_key=True
    )
    item_code: Mapped[str] = mapped_column(ForeignKey("checklist_items.code"), primary_key=True)
    ok: Mapped[bool]
    note: Mapped[str | None]
    checked_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(server_default=NOW)


class PatrolSettings(Base):
    """The one row of patrol evaluation settings (cleaning, coverage, difficulty, scores)."""

    __tablename__ = "patrol_settings"

    one: Mapped[bool] = mapped_column(primary_key=True, server_default=TRUE)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(server_default=NOW)
    updated_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))


# -- audit log ---------------------------------------------------------------------------


class AuditEntry(Base):
    """One row of the append-only audit log (UPDATE/DELETE/TRUNCATE raise in the DB)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=NOW)
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    actor: Mapped[str]
    action: Mapped[str]
    object_type: Mapped[str]
    object_id: Mapped[str | None]
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None]
    district_code: Mapped[str | None]


# -- Open311 -----------------------------------------------------------------------------


class Open311Key(Base):
    """An Open311 client's API key: its name and the SHA-256 of the key (never the key)."""

    __tablename__ = "open311_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    key_hash: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class IncidentPhoto(Base):
    """An image attached to an incident (JPEG, PNG or WebP, stored in the database)."""

    __tablename__ = "incident_photos"
    __table_args__ = (UniqueConstraint("incident_id", "sha256"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("incidents.id"))
    content_type: Mapped[str]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str]
    uploaded_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(server_default=NOW)
    district_code: Mapped[str]
