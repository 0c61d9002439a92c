"""Settings from the environment (GRIDOPS_* and DATABASE_URL), read when asked, never at import."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gis.cluster import LocalCluster
from gis.errors import ClusterError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIN_SECRET = 32
PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "dev", "development", "default"}


class Settings(BaseSettings):
    """All configuration. Build one explicitly (tests) or from the environment (`Settings()`)."""

    model_config = SettingsConfigDict(env_prefix="GRIDOPS_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "GRIDOPS_DATABASE_URL")
    )
    home: Path = Field(default=PROJECT_ROOT / ".gridops", description="project state folder")
    pg_port: int = Field(default=55432, ge=1024, le=65535)
    statement_timeout_ms: int = Field(default=15000, ge=100)
    metric_crs: int = Field(default=4548, description="projected CRS for metres (CGCS2000 GK 117E)")
    page_max: int = Field(default=1000, ge=1, description="largest page a list endpoint returns")
    basemap_url: str | None = Field(default=None, description="optional raster tile URL template")
    secret_key: SecretStr | None = Field(
        default=None, description="signs sessions and tokens; required in production")
    session_ttl_minutes: int = Field(
        default=480, ge=5, le=7 * 24 * 60, description="lifetime of a token or browser session")
    cookie_secure: bool = Field(
        default=True, description="mark session cookies Secure (browsers still send them to "
                                  "http://127.0.0.1 and localhost)")
    login_max_failures: int = Field(
        default=5, ge=1, description="failed logins per username before it is throttled")
    login_ip_max_failures: int = Field(
        default=30, ge=1, description="failed logins per client address before it is throttled")
    login_window_minutes: int = Field(
        default=15, ge=1, description="window over which failed logins are counted")
    public_rate_per_minute: int = Field(
        default=120, ge=1, description="requests per minute per client address to each public "
                                       "endpoint (health, login, citizen report, Open311), "
                                       "per worker process")
    photo_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="largest photo upload, in bytes")
    position_stale_minutes: int = Field(
        default=30, ge=1, description="a team position older than this is stale: the team is "
                                      "not recommended")
    dispatch_budget_s: int = Field(
        default=1800, ge=60, le=4 * 3600, description="road travel-time budget of a dispatch "
                                                      "recommendation (seconds)")
    escalation_interval_s: int = Field(
        default=60, ge=5, description="how often `gridops worker run` sweeps for overdue cases")
    reverse_rating_weight: float = Field(
        default=0.3, ge=0, le=1, description="weight of street offices' ratings (reverse "
                                             "evaluation) in a department's score")
    patrol_fix_interval_s: int = Field(
        default=5, ge=1, le=60, description="how often the patrol page records a GPS fix")
    patrol_upload_batch: int = Field(
        default=20, ge=1, le=1000, description="fixes the patrol page uploads per request")
    public_report_per_hour: int = Field(
        default=20, ge=1, description="citizen reports per hour per client address through a "
                                      "street sign's QR form, per worker process")
    public_base_url: str | None = Field(
        default=None, description="the address citizens reach the site at (e.g. "
                                  "https://gridops.example.gov.cn), encoded in the QR codes "
                                  "of street signs; default: the base URL of the request")
    grid_households_min: int = Field(
        default=300, ge=0, description="fewest households a 全科网格 should hold (plan validation)")
    grid_households_max: int = Field(
        default=500, ge=1, description="most households a 全科网格 should hold (plan validation)")
    plan_area_tolerance_m2: float = Field(
        default=1.0, gt=0, description="gaps and overlaps smaller than this are not reported "
                                       "(plan validation, boundary reports)")
    plan_compactness_min: float = Field(
        default=0.2, gt=0, le=1, description="Polsby-Popper 4πA/P² below which a grid is "
                                             "flagged as not compact (warning)")
    plan_street_snap_m: float = Field(
        default=15.0, gt=0, description="a drawn split line snaps to streets within this "
                                        "distance; a grid edge within it follows a street")
    boundary_report_buffer_m: float = Field(
        default=100.0, gt=0, le=5000, description="incidents within this distance of a "
                                                  "disputed boundary are in its report")
    host: str = "127.0.0.1"
    port: int = 8000

    @model_validator(mode="after")
    def _band_is_ordered(self) -> Settings:
        """The household band of a grid must have its minimum below its maximum."""
        if self.grid_households_min >= self.grid_households_max:
            raise ValueError("grid_households_min must be below grid_households_max")
        return self

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        """Production refuses a missing, placeholder or short secret key."""
        if self.env != "production":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(secret) < MIN_SECRET or secret.lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "GRIDOPS_SECRET_KEY must be a random value of at least "
                f"{MIN_SECRET} characters in production (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)")
        return self

    def signing_key(self) -> bytes:
        """The key that signs tokens and CSRF values: GRIDOPS_SECRET_KEY, else (outside
        production) a random key kept in the project folder, created on first use so that
        every worker process and restart shares it."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if self.env == "production":  # unreachable: the validator refuses it
            raise ValueError("GRIDOPS_SECRET_KEY is required in production")
        path = self.home / "secret_key"
        if not path.exists():  # written whole, then linked: concurrent workers agree
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f"secret_key.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip().encode()

    def cluster(self) -> LocalCluster:
        return LocalCluster(root=self.home / "pg", port=self.pg_port)

    @property
    def uses_local_cluster(self) -> bool:
        return not self.database_url

    def db_url(self) -> str:
        """The database to use: DATABASE_URL, else the local cluster's."""
        if self.database_url:
            return self.database_url
        cluster = self.cluster()
        if not cluster.initialized():
            raise ClusterError(
                f"no local PostgreSQL cluster in {cluster.root}; run `gridops db up` "
                "(or set DATABASE_URL)"
            )
        return cluster.url()

    def live_db_url(self) -> str:
        """db_url(), after checking that the local cluster is running (for commands that
        connect once: a clear message instead of a refused or mismatched connection)."""
        url = self.db_url()
        cluster = self.cluster()
        if self.uses_local_cluster and not cluster.running_pid():
            raise ClusterError(
                f"the local PostgreSQL cluster in {cluster.root} is not running; "
                "run `gridops db up`"
            )
        return url
