"""`make pipeline` end to end on the lab, as staging and as "production": a clean checkout builds
once, deploys to staging, smokes, deploys the same release id again and smokes; a checkout with a
deliberately broken commit (sign-up answers 500, /healthz stays 200 so the deploy's own gate
passes) stops at staging's smoke, staging is rolled back, production is never deployed.

The clean run is in a fresh clone with its own `make setup`, as a new Jenkins workspace would be,
so the release is built from that clone's app/; the broken commit lands in the same workspace, as
the job's next build would find it (setup has nothing left to install, the build must still make a
new release of the new commit). Needs `fab deploy --release ID` (see jenkins/README.md):
until it exists, the pipeline refuses to start and says so.

    FETCHFLEET_LAB_KEEP=1 FETCHFLEET_SKIP_CONVERGE=1 pytest tests/lab/test_pipeline.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fetchfleet import deploy as D
from fetchfleet.inventory import REPO, load_fleet

FLEET = load_fleet("lab")
APP = [h.name for h in FLEET.group("web") + FLEET.group("workers")]
HOSTS = D.Hosts()
GIT = ["git", "-c", "user.email=t@lab.invalid", "-c", "user.name=test"]


def clone(tmp: Path) -> Path:
    repo = tmp / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(repo)], check=True)
    return repo


def break_signup(repo: Path) -> None:
    """Commit, in the workspace, a change that makes sign-up answer 500."""
    web = repo / "app" / "src" / "cloudfetch" / "api.py"  # the JSON API blueprint
    text = web.read_text()
    needle = '@api.post("/signup")\ndef signup():  # type: ignore[no-untyped-def]\n'
    assert needle in text
    web.write_text(
        text.replace(needle, needle + '    return jsonify({"error": "broken"}), 500\n', 1)
    )
    subprocess.run([*GIT, "commit", "-qam", "test_pipeline: sign-up broken"], cwd=repo, check=True)


def pipeline(repo: Path) -> subprocess.CompletedProcess:
    """`make pipeline SKIP_TESTS=1` in the clone (make test ran the test stages)."""
    proc = subprocess.run(
        ["make", "pipeline", "SKIP_TESTS=1"], cwd=repo, capture_output=True, text=True, timeout=3600
    )
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return proc


def current() -> dict[str, str | None]:
    return {h.name: HOSTS.state(h)["current"] for h in FLEET.hosts if h.name in APP}


def deploys_of(release: str) -> list[dict]:
    audit = D.read_audit(D.control_audit_path("lab"))
    return [r for r in audit if r["action"] == "deploy" and r["release"] == release]


@pytest.fixture(scope="module")
def good_run(lab, converged, tmp_path_factory):
    repo = clone(tmp_path_factory.mktemp("workspace"))
    proc = pipeline(repo)
    return repo, proc


def test_a_clean_commit_goes_through_staging_and_production_as_one_release(good_run):
    repo, proc = good_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    release = (repo / "build" / "release.id").read_text().strip()
    assert (repo / "build" / f"{release}.tar.gz").is_file()
    assert set(current().values()) == {release}
    records = deploys_of(release)[-2:]
    assert [r["result"] for r in records] == ["ok", "ok"], records
    assert "pipeline ok" in proc.stdout
    assert proc.stdout.count("smoke test of http://") == 2


def test_a_broken_commit_stops_at_staging_smoke_rolls_back_and_spares_production(good_run):
    repo, _ = good_run
    before = current()
    assert len(set(before.values())) == 1
    break_signup(repo)
    proc = pipeline(repo)
    assert proc.returncode != 0
    release = (repo / "build" / "release.id").read_text().strip()
    assert release not in before.values()
    assert "FAILED at Smoke staging" in proc.stdout
    assert "sign-up" in proc.stdout and "500" in proc.stdout
    assert current() == before
    # Staging got it once and was rolled back; "production" never got it.
    assert [r["result"] for r in deploys_of(release)] == ["ok"]
    last = D.read_audit(D.control_audit_path("lab"))[-1]
    assert (last["action"], last["result"], last["release"]) == ("rollback", "ok", before[APP[0]])
    for stage in ("Deploy to production", "Smoke production"):
        assert any(
            line.startswith(stage) and "not run" in line for line in proc.stdout.splitlines()
        )
