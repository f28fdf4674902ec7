"""The Flask application: JSON API under /api, operational endpoints, and the HTML UI."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from cloudfetch import flows, health, services
from cloudfetch.config import Settings, load_settings
from cloudfetch.errors import ApiError
from cloudfetch.metrics import RequestCounter
from cloudfetch.models import ApiToken, Transfer, User

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api")
ops = Blueprint("ops", __name__)
# Multipart framing around an uploaded .torrent; the file itself is checked against the limit.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


def svc() -> services.Services:
    return services.current()


def db():  # type: ignore[no-untyped-def]
    if "db" not in g:
        g.db = svc().sessions()
    return g.db


def current_user() -> User:
    if "user" not in g:
        g.user = flows.user_for_token(db(), request.headers.get("Authorization"))
    return g.user


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_json", "send a JSON object with Content-Type: application/json"
        )
    return body


# Operational endpoints


@ops.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    body, code = health.health(svc())
    return jsonify(body), code


@ops.get("/version")
def version():  # type: ignore[no-untyped-def]
    return jsonify({"release": svc().settings.release})


# Accounts


@api.post("/signup")
def signup():  # type: ignore[no-untyped-def]
    body = json_body()
    user, token = flows.sign_up(db(), body.get("email"), body.get("password"))
    return jsonify({"user": {"id": user.id, "email": user.email}, "token": token}), 201


@api.post("/login")
def login():  # type: ignore[no-untyped-def]
    body = json_body()
    user = flows.log_in(db(), body.get("email"), body.get("password"))
    token = flows.issue_token(db(), user, "login")
    db().commit()
    return jsonify({"user": {"id": user.id, "email": user.email}, "token": token})


@api.get("/me")
def me():  # type: ignore[no-untyped-def]
    user = current_user()
    return jsonify({"id": user.id, "email": user.email})


@api.get("/tokens")
def list_tokens():  # type: ignore[no-untyped-def]
    tokens = db().query(ApiToken).filter_by(user_id=current_user().id).order_by(ApiToken.id)
    return jsonify(
        [{"id": t.id, "name": t.name, "created_at": t.created_at.isoformat()} for t in tokens]
    )


@api.post("/tokens")
def create_token():  # type: ignore[no-untyped-def]
    user = current_user()
    name = json_body().get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "invalid_name", "give the token a name")
    token = flows.issue_token(db(), user, name.strip())
    db().commit()
    return jsonify({"token": token, "name": name.strip()[:100]}), 201


@api.delete("/tokens/<int:token_id>")
def delete_token(token_id: int):  # type: ignore[no-untyped-def]
    token = db().query(ApiToken).filter_by(id=token_id, user_id=current_user().id).one_or_none()
    if token is None:
        raise ApiError(404, "not_found", "no such token")
    db().delete(token)
    db().commit()
    return "", 204


# Transfers


@api.post("/transfers")
def add_transfer():  # type: ignore[no-untyped-def]
    user = current_user()
    if request.files or request.form:
        upload = request.files.get("torrent")
        if upload is None:
            raise ApiError(400, "invalid_request", "upload the .torrent as form field 'torrent'")
        data = upload.read(svc().settings.max_upload_bytes + 1)
        if not data:
            raise ApiError(400, "invalid_torrent", "the uploaded file is empty")
        req = flows.TransferRequest(torrent=data)
    else:
        body = json_body()
        req = flows.TransferRequest(url=body.get("url"), magnet=body.get("magnet"))
    transfer = flows.add_transfer(db(), svc().settings, user, req)
    return jsonify(flows.transfer_json(transfer)), 202


@api.get("/transfers")
def list_transfers():  # type: ignore[no-untyped-def]
    transfers = (
        db().query(Transfer).filter_by(user_id=current_user().id).order_by(Transfer.id.desc())
    )
    return jsonify([flows.transfer_json(t) for t in transfers])


@api.get("/transfers/<int:transfer_id>")
def get_transfer(transfer_id: int):  # type: ignore[no-untyped-def]
    return jsonify(flows.transfer_json(flows.user_transfer(db(), current_user(), transfer_id)))


@api.delete("/transfers/<int:transfer_id>")
def delete_transfer(transfer_id: int):  # type: ignore[no-untyped-def]
    flows.delete_transfer(db(), current_user(), transfer_id)
    return "", 204


# Files


@api.get("/files")
def list_files():  # type: ignore[no-untyped-def]
    return jsonify(flows.browse(db(), current_user(), request.args.get("path")))


@api.get("/files/<int:file_id>")
def get_file(file_id: int):  # type: ignore[no-untyped-def]
    return jsonify(flows.file_json(flows.user_file(db(), current_user(), file_id)))


@api.get("/files/<int:file_id>/download")
def download_file(file_id: int):  # type: ignore[no-untyped-def]
    stored = flows.user_file(db(), current_user(), file_id)
    return flows.download_response(svc().settings, stored)


@api.get("/download")
def download_by_path():  # type: ignore[no-untyped-def]
    stored = flows.user_file_by_path(db(), current_user(), request.args.get("path"))
    return flows.download_response(svc().settings, stored)


@api.delete("/files/<int:file_id>")
def delete_file(file_id: int):  # type: ignore[no-untyped-def]
    flows.delete_file(db(), svc().settings, current_user(), file_id)
    return "", 204


@api.get("/search")
def search():  # type: ignore[no-untyped-def]
    found = flows.search_files(db(), svc().settings, current_user(), request.args.get("q"))
    return jsonify([flows.file_json(f) for f in found])


def _wants_html() -> bool:
    return request.blueprint == "ui"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; a missing or malformed setting raises ConfigError before anything starts."""
    from cloudfetch import ui

    settings = settings if settings is not None else load_settings()
    configured = services.configure(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    counter = RequestCounter(configured.engine, settings.metrics_flush_seconds)
    app.extensions["cloudfetch.request_counter"] = counter
    app.register_blueprint(ops)
    app.register_blueprint(api)
    app.register_blueprint(ui.bp)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        if "db" in g:
            g.db.rollback()
        if _wants_html():
            return ui.error_page(exc)
        response = jsonify(exc.body())
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        error = ApiError(
            exc.code or 500,
            "too_large" if exc.code == 413 else (exc.name or "error").lower().replace(" ", "_"),
            exc.description or exc.name,
        )
        return api_error(error)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s %s", request.method, request.path)
        return api_error(ApiError(500, "internal_error", "something went wrong on our side"))

    @app.after_request
    def count(response):  # type: ignore[no-untyped-def]
        counter.count(response.status_code)
        return response

    @app.teardown_appcontext
    def close_db(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    return app
