"""The small HTML UI: session login, CSRF-protected forms, the same flows as the API."""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, abort, redirect, render_template, request, session, url_for

from cloudfetch import context, flows
from cloudfetch.errors import ApiError
from cloudfetch.models import StoredFile, Transfer, User

ui = Blueprint("ui", __name__)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@ui.before_request
def check_csrf() -> None:
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
            abort(400, "the form expired or did not come from this site; reload and retry")


@ui.app_context_processor
def inject_csrf() -> dict[str, object]:
    return {"csrf_token": csrf_token}


def logged_in_user() -> User | None:
    user_id = session.get("user_id")
    return context.db().get(User, user_id) if user_id is not None else None


@ui.errorhandler(Exception)
def error_page(exc: Exception):  # type: ignore[no-untyped-def]
    """Errors on the UI's pages are pages too (the rest of the app answers JSON)."""
    error = context.api_error(exc)
    return render_template("error.html", error=error), error.status


def _start_session(user: User) -> None:
    session.clear()  # a fresh session (and CSRF token) at every log-in
    session["user_id"] = user.id


@ui.route("/signup", methods=["GET", "POST"])
def signup():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        user, _token = flows.sign_up(
            context.db(), request.form.get("email"), request.form.get("password")
        )
        _start_session(user)
        return redirect(url_for("ui.home"))
    return render_template("signup.html")


@ui.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        user = flows.log_in(context.db(), request.form.get("email"), request.form.get("password"))
        _start_session(user)
        return redirect(url_for("ui.home"))
    return render_template("login.html")


@ui.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect(url_for("ui.login"))


def _require_user() -> User:
    user = logged_in_user()
    if user is None:
        raise ApiError(401, "login_required", "log in first")
    return user


@ui.get("/")
def home():  # type: ignore[no-untyped-def]
    user = logged_in_user()
    if user is None:
        return redirect(url_for("ui.login"))
    db = context.db()
    transfers = db.query(Transfer).filter_by(user_id=user.id).order_by(Transfer.id.desc()).all()
    files = db.query(StoredFile).filter_by(user_id=user.id).order_by(StoredFile.path).all()
    return render_template("home.html", user=user, transfers=transfers, files=files)


@ui.post("/transfers")
def add_transfer():  # type: ignore[no-untyped-def]
    user = _require_user()
    settings = context.settings()
    upload = request.files.get("torrent")
    data = upload.read(settings.max_upload_bytes + 1) if upload and upload.filename else None
    req = flows.TransferRequest(
        url=request.form.get("url") or None,
        magnet=request.form.get("magnet") or None,
        torrent=data,
    )
    flows.add_transfer(context.db(), settings, user, req)
    return redirect(url_for("ui.home"))


@ui.get("/search")
def search():  # type: ignore[no-untyped-def]
    user = _require_user()
    query = request.args.get("q", "")
    found = flows.search_files(context.db(), context.settings(), user, query)
    return render_template("search.html", user=user, query=query, files=found)


@ui.get("/files/<int:file_id>/download")
def download(file_id: int):  # type: ignore[no-untyped-def]
    stored = flows.user_file(context.db(), _require_user(), file_id)
    return flows.download_response(context.settings(), stored)


@ui.post("/files/<int:file_id>/delete")
def delete(file_id: int):  # type: ignore[no-untyped-def]
    flows.delete_file(context.db(), context.settings(), _require_user(), file_id)
    return redirect(url_for("ui.home"))
