"""Request-context helpers every blueprint uses: the app's services and settings, one database
session per request, and turning whatever a view raised into the ApiError its page shows.

Kept apart from the factory (cloudfetch.web) so that blueprints import these, never the module
that imports them."""

from __future__ import annotations

import logging

from flask import current_app, g, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from cloudfetch.config import Settings
from cloudfetch.errors import ApiError
from cloudfetch.services import Services

log = logging.getLogger(__name__)

SERVICES = "cloudfetch.services"


def services() -> Services:
    """The services create_app configured for the app handling this request."""
    return current_app.extensions[SERVICES]


def settings() -> Settings:
    return services().settings


def db() -> Session:
    """This request's database session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def api_error(exc: Exception) -> ApiError:
    """What went wrong, as the ApiError the response shows. The request's unfinished database
    work is rolled back; an unexpected error is logged with its traceback and shown as a 500
    that discloses nothing."""
    if "db" in g:
        g.db.rollback()
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        code = "too_large" if exc.code == 413 else (exc.name or "error").lower().replace(" ", "_")
        return ApiError(exc.code or 500, code, exc.description or exc.name)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return ApiError(500, "internal_error", "something went wrong on our side")
