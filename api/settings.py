"""Settings from the environment (GRIDOPS_* and DATABASE_URL), read when asked, never at import."""

from __future__ import annotations

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
    host: str = "127.0.0.1"
    port: int = 8000

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
