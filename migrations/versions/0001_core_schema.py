"""Core schema: jurisdictions, grids, buildings, streets, road graph, people, teams,
event catalog, incidents and their workflow, joint zones, patrols, plans, users, audit.

Conventions (DESIGN.md §3):
- every geometry is EPSG:4326 (column typmod) and must be valid, non-empty and within
  lon/lat range (`gridops_geom_ok`);
- jurisdictions and grids are versioned by [valid_from, valid_to); one code has at most
  one version in force at any instant (exclusion constraint);
- division codes extend their parent's code (district 6, street 9, community 12,
  grid 15 digits); parent codes are derived from the code and must exist (deferred
  constraint trigger);
- every large table carries district_code for scale-out by district (§8).

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

CODE6 = "'^[0-9]{6}$'"

UPGRADE = [
    "CREATE EXTENSION IF NOT EXISTS postgis",
    "CREATE EXTENSION IF NOT EXISTS pgrouting",
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    # A geometry we accept: valid, non-empty, in lon/lat range (catches projected
    # coordinates mislabelled as 4326).
    """
    CREATE FUNCTION gridops_geom_ok(g geometry) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT ST_IsValid(g) AND NOT ST_IsEmpty(g)
         AND ST_XMin(g) >= -180 AND ST_XMax(g) <= 180
         AND ST_YMin(g) >= -90 AND ST_YMax(g) <= 90
    $$
    """,
    # Parent of a jurisdiction or grid must exist (any version). Deferred, so a file
    # may list children before parents inside one transaction.
    """
    CREATE FUNCTION gridops_check_parent() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
      parent text;
      parent_level text;
    BEGIN
      IF TG_TABLE_NAME = 'grids' THEN
        parent := NEW.community_code; parent_level := 'community';
      ELSIF NEW.level = 'district' THEN
        RETURN NULL;
      ELSE
        parent := NEW.parent_code;
        parent_level := CASE NEW.level WHEN 'street' THEN 'district' ELSE 'street' END;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM jurisdictions WHERE code = parent AND level = parent_level) THEN
        RAISE EXCEPTION USING
          ERRCODE = 'foreign_key_violation',
          MESSAGE = format('%s %s: parent %s %s does not exist', TG_TABLE_NAME, NEW.code,
                           parent_level, parent);
      END IF;
      RETURN NULL;
    END
    $$
    """,
    # A jurisdiction scope: district (6) or street (9) codes.
    """
    CREATE FUNCTION gridops_scope_codes_ok(codes text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT coalesce(bool_and(c ~ '^[0-9]{6}([0-9]{3})?$'), true) FROM unnest(codes) AS c
    $$
    """,
    # A jurisdiction may not be deleted while children use its code and no other
    # version of it remains (close it with valid_to instead).
    """
    CREATE FUNCTION gridops_check_no_children() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM jurisdictions WHERE code = OLD.code AND id <> OLD.id) THEN
        RETURN OLD;
      END IF;
      IF EXISTS (SELECT 1 FROM jurisdictions WHERE parent_code = OLD.code)
         OR EXISTS (SELECT 1 FROM grids WHERE community_code = OLD.code) THEN
        RAISE EXCEPTION USING
          ERRCODE = 'foreign_key_violation',
          MESSAGE = format('%s %s still has children; close it with valid_to instead',
                           OLD.level, OLD.code);
      END IF;
      RETURN OLD;
    END
    $$
    """,
    # The audit log is append-only.
    """
    CREATE FUNCTION gridops_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = format('%s is append-only: %s is not allowed', TG_TABLE_NAME, TG_OP);
    END
    $$
    """,
    # -- jurisdictions: 区 / 街道·乡镇 / 社区·村 ----------------------------------------
    """
    CREATE TABLE jurisdictions (
      id bigserial PRIMARY KEY,
      level text NOT NULL CHECK (level IN ('district', 'street', 'community')),
      code text NOT NULL,
      name text NOT NULL CHECK (btrim(name) <> ''),
      kind text,
      parent_code text GENERATED ALWAYS AS (
        CASE level WHEN 'street' THEN left(code, 6) WHEN 'community' THEN left(code, 9) END
      ) STORED,
      district_code text GENERATED ALWAYS AS (left(code, 6)) STORED NOT NULL,
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      valid_from timestamptz NOT NULL DEFAULT '2000-01-01T00:00:00+08',
      valid_to timestamptz,
      source text,
      is_synthetic boolean NOT NULL DEFAULT false,
      properties jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT jurisdictions_code_format CHECK (
        (level = 'district' AND code ~ '^[0-9]{6}$')
        OR (level = 'street' AND code ~ '^[0-9]{9}$')
        OR (level = 'community' AND code ~ '^[0-9]{12}$')
      ),
      CONSTRAINT jurisdictions_validity CHECK (valid_to IS NULL OR valid_to > valid_from),
      CONSTRAINT jurisdictions_one_version_in_force
        EXCLUDE USING gist (code WITH =, tstzrange(valid_from, valid_to) WITH &&)
    )
    """,
    "CREATE INDEX jurisdictions_geom_idx ON jurisdictions USING gist (geom)",
    "CREATE INDEX jurisdictions_parent_idx ON jurisdictions (parent_code)",
    "CREATE INDEX jurisdictions_code_idx ON jurisdictions (code, valid_from)",
    "CREATE INDEX jurisdictions_level_current_idx ON jurisdictions (level) WHERE valid_to IS NULL",
    """
    CREATE TRIGGER jurisdictions_no_orphans BEFORE DELETE ON jurisdictions
      FOR EACH ROW EXECUTE FUNCTION gridops_check_no_children()
    """,
    """
    CREATE CONSTRAINT TRIGGER jurisdictions_parent_exists
      AFTER INSERT OR UPDATE OF code, level ON jurisdictions
      DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION gridops_check_parent()
    """,
    # -- people: 街巷长, 小巷管家, 网格员 ----------------------------------------------
    f"""
    CREATE TABLE people (
      id bigserial PRIMARY KEY,
      name text NOT NULL CHECK (btrim(name) <> ''),
      phone text CHECK (phone ~ '^[0-9+][0-9 -]{{4,19}}$'),
      post text,
      organisation text,
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      is_synthetic boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # -- departments (1+5+N) ---------------------------------------------------------
    """
    CREATE TABLE departments (
      id bigserial PRIMARY KEY,
      code text NOT NULL UNIQUE,
      name text NOT NULL CHECK (btrim(name) <> ''),
      dept_type text NOT NULL CHECK (dept_type ~ '^[a-z_]+$'),
      tier text NOT NULL CHECK (tier IN ('core', 'stationed', 'on_call')),
      jurisdiction_code text NOT NULL CHECK (jurisdiction_code ~ '^[0-9]{6}([0-9]{3})?$'),
      district_code text GENERATED ALWAYS AS (left(jurisdiction_code, 6)) STORED NOT NULL,
      phone text,
      created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # -- users -----------------------------------------------------------------------
    """
    CREATE TABLE users (
      id bigserial PRIMARY KEY,
      username text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{2,64}$'),
      display_name text,
      password_hash text NOT NULL,
      roles text[] NOT NULL CHECK (
        cardinality(roles) > 0 AND roles <@ ARRAY['admin', 'operator', 'dispatcher',
          'street_chief', 'planner', 'viewer']::text[]
      ),
      scope_codes text[] NOT NULL DEFAULT '{}' CHECK (gridops_scope_codes_ok(scope_codes)),
      department_id bigint REFERENCES departments (id),
      person_id bigint REFERENCES people (id),
      is_active boolean NOT NULL DEFAULT true,
      is_demo boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      password_changed_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT users_dispatcher_has_department
        CHECK (NOT 'dispatcher' = ANY (roles) OR department_id IS NOT NULL),
      CONSTRAINT users_street_chief_has_person
        CHECK (NOT 'street_chief' = ANY (roles) OR person_id IS NOT NULL)
    )
    """,
    # -- grid plans (planner proposals; never live until applied) ---------------------
    f"""
    CREATE TABLE grid_plans (
      id bigserial PRIMARY KEY,
      name text NOT NULL CHECK (btrim(name) <> ''),
      status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'validated', 'approved', 'applied', 'rejected')),
      community_codes text[] NOT NULL CHECK (cardinality(community_codes) > 0),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      author_id bigint REFERENCES users (id),
      reviewer_id bigint REFERENCES users (id),
      effective_from timestamptz,
      comments jsonb NOT NULL DEFAULT '[]',
      validation jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      applied_at timestamptz,
      CONSTRAINT grid_plans_applied_has_dates
        CHECK (status <> 'applied' OR (applied_at IS NOT NULL AND effective_from IS NOT NULL))
    )
    """,
    # -- grids: 全科网格 -----------------------------------------------------------------
    """
    CREATE TABLE grids (
      id bigserial PRIMARY KEY,
      code text NOT NULL CHECK (code ~ '^[0-9]{15}$'),
      name text,
      community_code text GENERATED ALWAYS AS (left(code, 12)) STORED NOT NULL,
      street_code text GENERATED ALWAYS AS (left(code, 9)) STORED NOT NULL,
      district_code text GENERATED ALWAYS AS (left(code, 6)) STORED NOT NULL,
      households integer NOT NULL DEFAULT 0 CHECK (households >= 0),
      population integer CHECK (population >= 0),
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      valid_from timestamptz NOT NULL DEFAULT '2000-01-01T00:00:00+08',
      valid_to timestamptz,
      plan_id bigint REFERENCES grid_plans (id),
      source text,
      is_synthetic boolean NOT NULL DEFAULT false,
      properties jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT grids_validity CHECK (valid_to IS NULL OR valid_to > valid_from),
      CONSTRAINT grids_one_version_in_force
        EXCLUDE USING gist (code WITH =, tstzrange(valid_from, valid_to) WITH &&)
    )
    """,
    "CREATE INDEX grids_geom_idx ON grids USING gist (geom)",
    "CREATE INDEX grids_code_idx ON grids (code, valid_from)",
    "CREATE INDEX grids_community_idx ON grids (community_code)",
    "CREATE INDEX grids_district_idx ON grids (district_code)",
    """
    CREATE CONSTRAINT TRIGGER grids_parent_exists
      AFTER INSERT OR UPDATE OF code ON grids
      DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION gridops_check_parent()
    """,
    """
    CREATE TABLE grid_plan_grids (
      id bigserial PRIMARY KEY,
      plan_id bigint NOT NULL REFERENCES grid_plans (id) ON DELETE CASCADE,
      code text CHECK (code ~ '^[0-9]{15}$'),
      name text,
      community_code text NOT NULL CHECK (community_code ~ '^[0-9]{12}$'),
      households integer NOT NULL DEFAULT 0 CHECK (households >= 0),
      source_grid_id bigint REFERENCES grids (id),
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom))
    )
    """,
    "CREATE INDEX grid_plan_grids_plan_idx ON grid_plan_grids (plan_id)",
    "CREATE INDEX grid_plan_grids_geom_idx ON grid_plan_grids USING gist (geom)",
    """
    CREATE TABLE grid_assignments (
      id bigserial PRIMARY KEY,
      grid_id bigint NOT NULL REFERENCES grids (id),
      person_id bigint NOT NULL REFERENCES people (id),
      role text NOT NULL DEFAULT 'grid_worker' CHECK (role IN ('grid_worker', 'grid_leader')),
      valid_from timestamptz NOT NULL DEFAULT now(),
      valid_to timestamptz,
      CHECK (valid_to IS NULL OR valid_to > valid_from)
    )
    """,
    "CREATE INDEX grid_assignments_grid_idx ON grid_assignments (grid_id)",
    "CREATE INDEX grid_assignments_person_idx ON grid_assignments (person_id)",
    # -- buildings: 楼栋 ------------------------------------------------------------------
    f"""
    CREATE TABLE buildings (
      id bigserial PRIMARY KEY,
      code text UNIQUE,
      name text,
      address text,
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      grid_code text CHECK (grid_code ~ '^[0-9]{{15}}$'),
      floors smallint CHECK (floors BETWEEN 1 AND 200),
      households integer NOT NULL DEFAULT 0 CHECK (households >= 0),
      use text,
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      source text,
      is_synthetic boolean NOT NULL DEFAULT false,
      properties jsonb NOT NULL DEFAULT '{{}}',
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT buildings_grid_in_district
        CHECK (grid_code IS NULL OR left(grid_code, 6) = district_code)
    )
    """,
    "CREATE INDEX buildings_geom_idx ON buildings USING gist (geom)",
    "CREATE INDEX buildings_district_idx ON buildings (district_code)",
    "CREATE INDEX buildings_grid_idx ON buildings (grid_code)",
    # Area shares of buildings that straddle a boundary, per level.
    """
    CREATE TABLE building_shares (
      building_id bigint NOT NULL REFERENCES buildings (id) ON DELETE CASCADE,
      level text NOT NULL CHECK (level IN ('district', 'street', 'community', 'grid')),
      code text NOT NULL CHECK (code ~ '^[0-9]{6}([0-9]{3}){0,3}$'),
      share double precision NOT NULL CHECK (share > 0 AND share <= 1),
      area_m2 double precision CHECK (area_m2 >= 0),
      CONSTRAINT building_shares_code_fits_level CHECK (length(code) = CASE level
        WHEN 'district' THEN 6 WHEN 'street' THEN 9 WHEN 'community' THEN 12 ELSE 15 END),
      PRIMARY KEY (building_id, level, code)
    )
    """,
    # -- streets: 街巷 (named lines) ------------------------------------------------------
    f"""
    CREATE TABLE streets (
      id bigserial PRIMARY KEY,
      code text UNIQUE,
      name text NOT NULL CHECK (btrim(name) <> ''),
      road_class text NOT NULL CHECK (road_class IN ('arterial', 'secondary', 'branch', 'alley')),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      street_office_code text CHECK (street_office_code ~ '^[0-9]{{9}}$'),
      geom geometry(MultiLineString, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      source text,
      is_synthetic boolean NOT NULL DEFAULT false,
      properties jsonb NOT NULL DEFAULT '{{}}',
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT streets_office_in_district
        CHECK (street_office_code IS NULL OR left(street_office_code, 6) = district_code)
    )
    """,
    "CREATE INDEX streets_geom_idx ON streets USING gist (geom)",
    "CREATE INDEX streets_district_idx ON streets (district_code)",
    """
    CREATE TABLE street_assignments (
      id bigserial PRIMARY KEY,
      street_id bigint NOT NULL REFERENCES streets (id),
      person_id bigint NOT NULL REFERENCES people (id),
      role text NOT NULL CHECK (role IN ('street_chief', 'alley_chief', 'steward')),
      valid_from timestamptz NOT NULL DEFAULT now(),
      valid_to timestamptz,
      CHECK (valid_to IS NULL OR valid_to > valid_from),
      CONSTRAINT street_assignments_one_chief
        EXCLUDE USING gist (street_id WITH =, tstzrange(valid_from, valid_to) WITH &&)
        WHERE (role <> 'steward')
    )
    """,
    "CREATE INDEX street_assignments_person_idx ON street_assignments (person_id)",
    # -- road graph (pgRouting conventions: source/target, cost/reverse_cost seconds;
    #    a negative cost closes that direction) ---------------------------------------
    f"""
    CREATE TABLE road_nodes (
      id bigint PRIMARY KEY,
      geom geometry(Point, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      district_code text NOT NULL CHECK (district_code ~ {CODE6})
    )
    """,
    "CREATE INDEX road_nodes_geom_idx ON road_nodes USING gist (geom)",
    f"""
    CREATE TABLE road_edges (
      id bigserial PRIMARY KEY,
      source bigint NOT NULL REFERENCES road_nodes (id),
      target bigint NOT NULL REFERENCES road_nodes (id),
      street_id bigint REFERENCES streets (id) ON DELETE SET NULL,
      name text,
      road_class text NOT NULL CHECK (road_class IN ('arterial', 'secondary', 'branch', 'alley')),
      length_m double precision NOT NULL CHECK (length_m > 0),
      speed_kmh double precision NOT NULL CHECK (speed_kmh > 0 AND speed_kmh <= 130),
      cost double precision NOT NULL,
      reverse_cost double precision NOT NULL,
      geom geometry(LineString, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      CONSTRAINT road_edges_no_loop CHECK (source <> target),
      CONSTRAINT road_edges_passable CHECK (cost >= 0 OR reverse_cost >= 0)
    )
    """,
    "CREATE INDEX road_edges_geom_idx ON road_edges USING gist (geom)",
    "CREATE INDEX road_edges_source_idx ON road_edges (source)",
    "CREATE INDEX road_edges_target_idx ON road_edges (target)",
    # -- teams ------------------------------------------------------------------------
    """
    CREATE TABLE teams (
      id bigserial PRIMARY KEY,
      code text NOT NULL UNIQUE,
      name text NOT NULL CHECK (btrim(name) <> ''),
      department_id bigint NOT NULL REFERENCES departments (id),
      capabilities text[] NOT NULL DEFAULT '{}',
      home_code text NOT NULL CHECK (home_code ~ '^[0-9]{6}([0-9]{3})?$'),
      district_code text GENERATED ALWAYS AS (left(home_code, 6)) STORED NOT NULL,
      status text NOT NULL DEFAULT 'off_duty'
        CHECK (status IN ('available', 'busy', 'off_duty', 'out_of_service')),
      shift_start time,
      shift_end time,
      members smallint CHECK (members > 0),
      phone text,
      position geometry(Point, 4326) CHECK (position IS NULL OR gridops_geom_ok(position)),
      position_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT teams_position_has_time CHECK ((position IS NULL) = (position_at IS NULL))
    )
    """,
    "CREATE INDEX teams_position_idx ON teams USING gist (position)",
    "CREATE INDEX teams_department_idx ON teams (department_id)",
    f"""
    CREATE TABLE team_positions (
      team_id bigint NOT NULL REFERENCES teams (id),
      at timestamptz NOT NULL,
      geom geometry(Point, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      accuracy_m real CHECK (accuracy_m >= 0),
      speed_mps real CHECK (speed_mps >= 0),
      received_at timestamptz NOT NULL DEFAULT now(),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      PRIMARY KEY (team_id, at)
    )
    """,
    "CREATE INDEX team_positions_at_idx ON team_positions USING brin (at)",
    # -- event catalog: 事件 / 部件 classes --------------------------------------------
    """
    CREATE TABLE event_classes (
      id serial PRIMARY KEY,
      kind text NOT NULL CHECK (kind IN ('event', 'component')),
      code text NOT NULL CHECK (code ~ '^[0-9]{4}$'),
      major_code text GENERATED ALWAYS AS (left(code, 2)) STORED NOT NULL,
      major_name text NOT NULL,
      name text NOT NULL CHECK (btrim(name) <> ''),
      departments jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(departments) = 'array'),
      time_limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(time_limits) = 'object'),
      default_whistle text
        CHECK (default_whistle IN ('enforcement', 'priority', 'emergency', 'joint')),
      active boolean NOT NULL DEFAULT true,
      UNIQUE (kind, code)
    )
    """,
    # -- incidents (denormalised placement) ------------------------------------------
    f"""
    CREATE TABLE incidents (
      id bigserial PRIMARY KEY,
      idempotency_key text UNIQUE,
      source text NOT NULL CHECK (source IN ('12345', 'grid_worker', 'street_chief', 'steward',
        'citizen', 'sensor', 'other')),
      event_class_id integer NOT NULL REFERENCES event_classes (id),
      description text CHECK (char_length(description) <= 4000),
      address text,
      reporter_name text,
      reporter_phone text,
      reported_at timestamptz NOT NULL DEFAULT now(),
      received_at timestamptz NOT NULL DEFAULT now(),
      geom geometry(Point, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      input_crs text NOT NULL DEFAULT 'wgs84' CHECK (input_crs IN ('wgs84', 'gcj02', 'bd09')),
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'registered', 'void',
        'dispatched', 'handling', 'feedback', 'verifying', 'closed', 'ledger')),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      street_code text
        CHECK (street_code ~ '^[0-9]{{9}}$' AND left(street_code, 6) = district_code),
      community_code text CHECK (community_code ~ '^[0-9]{{12}}$'),
      grid_code text CHECK (grid_code ~ '^[0-9]{{15}}$'),
      grid_id bigint REFERENCES grids (id),
      building_id bigint REFERENCES buildings (id) ON DELETE SET NULL,
      street_id bigint REFERENCES streets (id) ON DELETE SET NULL,
      chief_person_id bigint REFERENCES people (id),
      is_joint boolean NOT NULL DEFAULT false,
      joint jsonb,
      deadlines jsonb NOT NULL DEFAULT '{{}}',
      supervised boolean NOT NULL DEFAULT false,
      created_by bigint REFERENCES users (id),
      closed_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT incidents_community_in_street CHECK (
        community_code IS NULL
        OR (street_code IS NOT NULL AND left(community_code, 9) = street_code)
      ),
      CONSTRAINT incidents_grid_in_community CHECK (
        grid_code IS NULL OR (community_code IS NOT NULL AND left(grid_code, 12) = community_code)
      ),
      CONSTRAINT incidents_closed_has_time CHECK (status <> 'closed' OR closed_at IS NOT NULL)
    )
    """,
    "CREATE INDEX incidents_geom_idx ON incidents USING gist (geom)",
    "CREATE INDEX incidents_district_time_idx ON incidents (district_code, reported_at)",
    "CREATE INDEX incidents_street_idx ON incidents (street_code)",
    "CREATE INDEX incidents_grid_idx ON incidents (grid_code)",
    "CREATE INDEX incidents_status_idx ON incidents (status)",
    "CREATE INDEX incidents_joint_idx ON incidents (id) WHERE is_joint",
    f"""
    CREATE TABLE case_events (
      id bigserial PRIMARY KEY,
      incident_id bigint NOT NULL REFERENCES incidents (id),
      at timestamptz NOT NULL DEFAULT now(),
      actor_id bigint REFERENCES users (id),
      action text NOT NULL,
      from_status text,
      to_status text,
      reason text,
      data jsonb NOT NULL DEFAULT '{{}}',
      district_code text NOT NULL CHECK (district_code ~ {CODE6})
    )
    """,
    "CREATE INDEX case_events_incident_idx ON case_events (incident_id, at)",
    # -- whistles (吹哨) and dispatches (报到) -------------------------------------------
    f"""
    CREATE TABLE whistles (
      id bigserial PRIMARY KEY,
      incident_id bigint NOT NULL REFERENCES incidents (id),
      kind text NOT NULL CHECK (kind IN ('enforcement', 'priority', 'emergency', 'joint')),
      blown_by bigint REFERENCES users (id),
      blown_at timestamptz NOT NULL DEFAULT now(),
      required_arrival_s integer NOT NULL DEFAULT 1800 CHECK (required_arrival_s > 0),
      jurisdiction_codes text[] NOT NULL DEFAULT '{{}}',
      note text,
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      CONSTRAINT whistles_joint_names_both_sides
        CHECK (kind <> 'joint' OR cardinality(jurisdiction_codes) >= 2)
    )
    """,
    "CREATE INDEX whistles_incident_idx ON whistles (incident_id)",
    """
    CREATE TABLE whistle_summons (
      whistle_id bigint NOT NULL REFERENCES whistles (id) ON DELETE CASCADE,
      department_id bigint NOT NULL REFERENCES departments (id),
      jurisdiction_code text NOT NULL CHECK (jurisdiction_code ~ '^[0-9]{6}([0-9]{3})?$'),
      PRIMARY KEY (whistle_id, department_id)
    )
    """,
    f"""
    CREATE TABLE dispatches (
      id bigserial PRIMARY KEY,
      incident_id bigint NOT NULL REFERENCES incidents (id),
      whistle_id bigint REFERENCES whistles (id),
      team_id bigint NOT NULL REFERENCES teams (id),
      status text NOT NULL DEFAULT 'dispatched' CHECK (status IN ('dispatched', 'accepted',
        'en_route', 'on_scene', 'done', 'declined', 'cancelled')),
      dispatched_by bigint REFERENCES users (id),
      dispatched_at timestamptz NOT NULL DEFAULT now(),
      accepted_at timestamptz,
      en_route_at timestamptz,
      on_scene_at timestamptz,
      done_at timestamptz,
      declined_at timestamptz,
      cancelled_at timestamptz,
      reason text,
      override_reason text,
      eta_s integer CHECK (eta_s >= 0),
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      CONSTRAINT dispatches_steps_in_order CHECK (
        (accepted_at IS NULL OR accepted_at >= dispatched_at)
        AND (en_route_at IS NULL OR en_route_at >= coalesce(accepted_at, dispatched_at))
        AND (on_scene_at IS NULL
             OR on_scene_at >= coalesce(en_route_at, accepted_at, dispatched_at))
        AND (done_at IS NULL
             OR done_at >= coalesce(on_scene_at, en_route_at, accepted_at, dispatched_at))
        AND (declined_at IS NULL OR declined_at >= dispatched_at)
        AND (cancelled_at IS NULL OR cancelled_at >= dispatched_at)
      ),
      CONSTRAINT dispatches_status_has_time CHECK (
        (status <> 'accepted' OR accepted_at IS NOT NULL)
        AND (status <> 'en_route' OR en_route_at IS NOT NULL)
        AND (status <> 'on_scene' OR on_scene_at IS NOT NULL)
        AND ((status = 'done') = (done_at IS NOT NULL))
        AND ((status = 'declined') = (declined_at IS NOT NULL))
        AND ((status = 'cancelled') = (cancelled_at IS NOT NULL))
      )
    )
    """,
    "CREATE INDEX dispatches_incident_idx ON dispatches (incident_id)",
    # A team holds at most one active assignment: the database settles concurrent
    # dispatches of one team.
    """
    CREATE UNIQUE INDEX dispatches_one_active_per_team ON dispatches (team_id)
      WHERE status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
    """,
    # -- joint zones (联合哨) --------------------------------------------------------------
    """
    CREATE TABLE joint_zones (
      id bigserial PRIMARY KEY,
      level text NOT NULL CHECK (level IN ('district', 'street')),
      code_a text NOT NULL CHECK (code_a ~ '^[0-9]{6}([0-9]{3})?$'),
      code_b text NOT NULL CHECK (code_b ~ '^[0-9]{6}([0-9]{3})?$'),
      origin text NOT NULL DEFAULT 'derived' CHECK (origin IN ('derived', 'drawn')),
      width_m double precision CHECK (width_m > 0),
      district_code text GENERATED ALWAYS AS (left(code_a, 6)) STORED NOT NULL,
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      created_by bigint REFERENCES users (id),
      created_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT joint_zones_ordered_pair CHECK (code_a < code_b),
      CONSTRAINT joint_zones_level_codes CHECK (
        length(code_a) = length(code_b)
        AND length(code_a) = CASE level WHEN 'district' THEN 6 ELSE 9 END
      ),
      CONSTRAINT joint_zones_derived_has_width CHECK (origin <> 'derived' OR width_m IS NOT NULL)
    )
    """,
    "CREATE INDEX joint_zones_geom_idx ON joint_zones USING gist (geom)",
    # -- patrols (日巡) ---------------------------------------------------------------
    f"""
    CREATE TABLE patrols (
      id bigserial PRIMARY KEY,
      idempotency_key text UNIQUE,
      person_id bigint NOT NULL REFERENCES people (id),
      street_id bigint NOT NULL REFERENCES streets (id),
      started_at timestamptz NOT NULL,
      ended_at timestamptz,
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'abandoned')),
      track geometry(LineStringM, 4326) CHECK (track IS NULL OR gridops_geom_ok(track)),
      coverage real CHECK (coverage BETWEEN 0 AND 1),
      checklist jsonb NOT NULL DEFAULT '[]',
      summary jsonb,
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      CONSTRAINT patrols_end_after_start CHECK (ended_at IS NULL OR ended_at >= started_at)
    )
    """,
    "CREATE INDEX patrols_person_idx ON patrols (person_id, started_at)",
    "CREATE INDEX patrols_track_idx ON patrols USING gist (track)",
    f"""
    CREATE TABLE patrol_points (
      patrol_id bigint NOT NULL REFERENCES patrols (id) ON DELETE CASCADE,
      at timestamptz NOT NULL,
      geom geometry(Point, 4326) NOT NULL CHECK (gridops_geom_ok(geom)),
      accuracy_m real CHECK (accuracy_m >= 0),
      kept boolean NOT NULL DEFAULT true,
      drop_reason text,
      district_code text NOT NULL CHECK (district_code ~ {CODE6}),
      PRIMARY KEY (patrol_id, at)
    )
    """,
    # -- audit log (append-only) -------------------------------------------------------
    """
    CREATE TABLE audit_log (
      id bigserial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      user_id bigint REFERENCES users (id),
      actor text NOT NULL,
      action text NOT NULL,
      object_type text NOT NULL,
      object_id text,
      before jsonb,
      after jsonb,
      request_id text,
      district_code text CHECK (district_code ~ '^[0-9]{6}$')
    )
    """,
    "CREATE INDEX audit_log_at_idx ON audit_log (at)",
    "CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id)",
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
      FOR EACH ROW EXECUTE FUNCTION gridops_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
      FOR EACH STATEMENT EXECUTE FUNCTION gridops_append_only()
    """,
]

TABLES = [
    "audit_log", "patrol_points", "patrols", "joint_zones", "dispatches", "whistle_summons",
    "whistles", "case_events", "incidents", "event_classes", "team_positions", "teams",
    "road_edges", "road_nodes", "street_assignments", "streets", "building_shares",
    "buildings", "grid_assignments", "grid_plan_grids", "grids", "grid_plans", "users",
    "departments", "people", "jurisdictions",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
    for function in ("gridops_append_only()", "gridops_check_no_children()",
                     "gridops_check_parent()", "gridops_scope_codes_ok(text[])",
                     "gridops_geom_ok(geometry)"):
        op.execute(f"DROP FUNCTION {function}")
