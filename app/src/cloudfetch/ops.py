"""Operational endpoints for load balancers, deploys and monitoring: /healthz and /version."""

from __future__ import annotations

from flask import Blueprint, jsonify

from cloudfetch import context, health

ops = Blueprint("ops", __name__)


@ops.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    body, code = health.health(context.services())
    return jsonify(body), code


@ops.get("/version")
def version():  # type: ignore[no-untyped-def]
    return jsonify({"release": context.settings().release})
