"""The process-wide services built from Settings: database engine, session factory, Solr and
Transmission clients. The web app and the Celery worker each configure them once at start-up
(Celery itself is configured by the same entry points: cloudfetch.celery_app)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from cloudfetch.config import Settings, load_settings
from cloudfetch.search import FileIndex
from cloudfetch.torrents import TorrentClient

DB_CONNECT_TIMEOUT_SECONDS = 2


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    def file_index(self) -> FileIndex:
        return FileIndex.for_settings(self.settings)

    def torrent_client(self) -> TorrentClient:
        s = self.settings
        return TorrentClient(s.transmission_url, s.transmission_username, s.transmission_password)


_current: Services | None = None


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """The app's database engine. psycopg 3 prepares statements it runs often on its own; behind
    pgbouncer's transaction pooling the next transaction may land on a server connection that
    has them already (DuplicatePreparedStatement), so automatic preparing is off."""
    return create_engine(
        database_url,
        connect_args={"connect_timeout": DB_CONNECT_TIMEOUT_SECONDS, "prepare_threshold": None},
        **kwargs,
    )


def configure(settings: Settings) -> Services:
    global _current
    if _current is not None:
        _current.engine.dispose()
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    _current = Services(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
    )
    return _current


def current() -> Services:
    """The configured services; a worker process that was not configured loads the settings
    from its environment (raising ConfigError naming a bad setting)."""
    return _current if _current is not None else configure(load_settings())
