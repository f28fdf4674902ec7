"""fetchfleet_app against the app's real `cloudfetch metrics` (the bundled app, its own
virtualenv .venv-app) on a migrated PostgreSQL 15 database whose counters, users and transfers
the test sets. Lab test for the lead: on web1 `munin-run fetchfleet_app` (as the plugin's user
cloudfetch, through cloudfetch-run) reports the requests wrk sends through lb1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fetchfleet_app as plugin
import pytest
from conftest import REPO, Pair
from munin_run import run

CLOUDFETCH = REPO / ".venv-app" / "bin" / "cloudfetch"


@pytest.fixture
def app_env(pg_pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if not CLOUDFETCH.exists():
        pytest.fail(f"{CLOUDFETCH} missing: run `make setup` (it builds the app's .venv-app)")
    db = "cloudfetch_metrics"
    pg_pair.primary.sql(f"DROP DATABASE IF EXISTS {db}")
    pg_pair.primary.sql(f"CREATE DATABASE {db}")
    (tmp_path / "storage").mkdir()
    for key, value in {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_pair.primary.port}/{db}",
        "BROKER_URL": "memory://",
        "SOLR_URL": "http://127.0.0.1:9/solr/files",
        "TRANSMISSION_URL": "http://127.0.0.1:9/transmission/rpc",
        "TRANSMISSION_USERNAME": "u",
        "TRANSMISSION_PASSWORD": "p",
        "STORAGE_ROOT": str(tmp_path / "storage"),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
    }.items():
        monkeypatch.setenv(f"CLOUDFETCH_{key}", value)
    subprocess.run([str(CLOUDFETCH), "migrate"], check=True, capture_output=True)
    pg_pair.primary.sql(
        "INSERT INTO users (email, password_hash, created_at) VALUES "
        "('a@example.org', 'x', now()), ('b@example.org', 'x', now() - interval '2 days');"
        "INSERT INTO transfers (user_id, kind, state, source, progress, created_at, updated_at) "
        "SELECT 1, 'url', s, 'https://example.org/', 0, now(), now() "
        "FROM unnest(array['queued', 'queued', 'downloading', 'failed']) s;"
        "INSERT INTO counters VALUES ('requests_total', 100), ('responses_4xx_total', 7), "
        "('responses_5xx_total', 3)",
        db=db,
    )
    return {
        "command": f"{CLOUDFETCH} metrics",
        "MUNIN_STATEFILE": str(tmp_path / "state"),
        "min_requests": "10",
    }


def set_counters(pg_pair: Pair, total: int, server: int) -> None:
    pg_pair.primary.sql(
        f"UPDATE counters SET value = {total} WHERE name = 'requests_total';"
        f"UPDATE counters SET value = {server} WHERE name = 'responses_5xx_total'",
        db="cloudfetch_metrics",
    )


def test_figures_from_the_apps_own_metrics(app_env: dict[str, str], pg_pair: Pair) -> None:
    fetch = run(plugin.App, env=app_env)
    assert fetch.code == 0, fetch.stderr
    assert fetch.values["fetchfleet_app_up"] == {"up": "1"}
    assert fetch.values["fetchfleet_app_requests"] == {
        "ok": "90",
        "client_errors": "7",
        "server_errors": "3",
    }
    assert fetch.values["fetchfleet_app_signups"] == {"signups": "1"}  # within the last hour
    assert fetch.values["fetchfleet_app_transfers"] == {
        "queued": "2",
        "active": "1",
        "broker_backlog": "0",
    }
    assert fetch.values["fetchfleet_app_transfer_failures"] == {"failed": "1"}
    # The 5xx share needs a window: the first run sets its start.
    assert fetch.values["fetchfleet_app_errors"] == {"server_error_percent": "U"}
    set_counters(pg_pair, total=105, server=8)  # 5 more requests, all 5xx: not enough yet
    assert (
        run(plugin.App, env=app_env).values["fetchfleet_app_errors"]["server_error_percent"] == "U"
    )
    set_counters(pg_pair, total=120, server=9)  # 20 since the start, 6 of them 5xx
    assert (
        run(plugin.App, env=app_env).values["fetchfleet_app_errors"]["server_error_percent"] == "30"
    )


def test_config_thresholds_and_the_signup_window(app_env: dict[str, str]) -> None:
    config = run(plugin.App, "config", env={**app_env, "signup_window_minutes": "15"})
    assert config.thresholded() == {
        "fetchfleet_app_up": {"up": {"critical": "1:"}},
        "fetchfleet_app_errors": {"server_error_percent": {"warning": "5", "critical": "20"}},
        "fetchfleet_app_transfers": {"queued": {"warning": "50", "critical": "200"}},
    }
    assert (
        config.config["fetchfleet_app_signups"]["graph_title"] == "Sign-ups in the last 15 minutes"
    )
    assert config.config["fetchfleet_app_requests"]["ok.type"] == "DERIVE"


def test_a_database_that_is_down_makes_the_app_down(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFETCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    fetch = run(plugin.App, env=app_env)
    assert fetch.code == 0 and fetch.values["fetchfleet_app_up"] == {"up": "0"}
    assert fetch.values["fetchfleet_app_transfers"]["queued"] == "U"
    assert "exited 1" in fetch.stderr


def test_no_release_deployed_is_down(app_env: dict[str, str], tmp_path: Path) -> None:
    # What cloudfetch-run says (exit 78) before the first deploy.
    run_script = tmp_path / "cloudfetch-run"
    run_script.write_text(
        "#!/bin/sh\necho 'cloudfetch-run: no release deployed yet (/srv/cloudfetch/current is "
        "missing); run playbooks/deploy.yml' >&2\nexit 78\n"
    )
    run_script.chmod(0o755)
    fetch = run(plugin.App, env={**app_env, "command": f"{run_script} cloudfetch metrics"})
    assert fetch.values["fetchfleet_app_up"] == {"up": "0"}
    assert "no release deployed yet" in fetch.stderr
