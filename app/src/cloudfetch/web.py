"""The app factory: the JSON API under /api, the operational endpoints and the HTML UI, each a
blueprint. Errors answer as JSON app-wide; the UI's blueprint renders its own as HTML pages."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from cloudfetch import context, services
from cloudfetch.api import api
from cloudfetch.celery_app import celery_init_app
from cloudfetch.config import Settings, load_settings
from cloudfetch.metrics import RequestCounter
from cloudfetch.ops import ops
from cloudfetch.ui import ui

# Multipart framing around an uploaded .torrent; the file itself is checked against the limit.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


def json_error(exc: Exception) -> Response:
    error = context.api_error(exc)
    response = jsonify(error.body())
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; a missing or malformed setting raises ConfigError before anything starts."""
    settings = settings if settings is not None else load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    configured = services.configure(settings)
    app.extensions[context.SERVICES] = configured
    # The web tier only publishes tasks; the workers configure their own (cloudfetch.worker).
    app.extensions["celery"] = celery_init_app(settings)
    counter = RequestCounter(configured.engine, settings.metrics_flush_seconds)
    app.extensions["cloudfetch.request_counter"] = counter
    app.register_blueprint(ops)
    app.register_blueprint(api)
    app.register_blueprint(ui)
    # An Exception handler sees HTTP errors (404, 405, 413...) too: every error answers the same way.
    app.register_error_handler(Exception, json_error)

    @app.after_request
    def count(response: Response) -> Response:
        counter.count(response.status_code)
        return response

    app.teardown_appcontext(context.close_db)
    return app
