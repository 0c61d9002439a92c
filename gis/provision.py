"""Bring a database to a usable state: packages, local cluster, database, extensions."""

from __future__ import annotations

from gis.cluster import LocalCluster, LogFn, ensure_system_packages
from gis.database import ensure_database, ensure_extensions, make_engine


def provision(url: str | None, cluster: LocalCluster | None, log: LogFn) -> str:
    """Idempotent: with a `cluster`, install packages, initialise and start it and use its
    URL; otherwise use `url`. Create the database and its extensions (postgis,
    pgrouting, btree_gist). Return the URL."""
    if cluster is not None:
        ensure_system_packages(log)
        cluster.init(log)
        cluster.start(log)
        url = cluster.url()
    if not url:
        raise ValueError("provision needs a URL or a cluster")
    if ensure_database(url):
        log("created database")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            created = ensure_extensions(conn)
    finally:
        engine.dispose()
    if created:
        log(f"created extensions: {', '.join(created)}")
    return url
