"""roles/jenkins on the lab's `jenkins` host, as far as the lab can take it: no registry here has
jenkins.war, so the role is exercised up to its checksum — a war (and plugin list) from a mirror
on the control machine that does not match the pinned SHA-256 must stop the run there, with
nothing installed; bad variables stop it before any change, naming the variable.

    FETCHFLEET_LAB_KEEP=1 FETCHFLEET_SKIP_CONVERGE=1 pytest tests/lab/test_jenkins.py
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchfleet.inventory import load_fleet
from fetchfleet.lab import run_on
from fetchfleet.playbook import run_playbook

from badvars import assert_refused_before_any_change

VERSION = "2.479.3"
REQUIRED = [
    "configuration-as-code",
    "matrix-auth",
    "workflow-aggregator",
    "pipeline-milestone-step",
    "pipeline-input-step",
    "lockable-resources",
    "git",
    "github",
    "build-timeout",
    "timestamper",
    "postbuildscript",
    "credentials-binding",
]


@pytest.fixture(scope="module")
def jenkins_host() -> str:
    hosts = load_fleet("lab").group("jenkins")
    assert hosts, "the lab inventory has no host in group jenkins"
    return hosts[0].name


@pytest.fixture
def tampered_mirror(lab) -> Iterator[tuple[str, str]]:
    """A mirror on the control machine with a war whose bytes are not what the pin says, as
    after a corrupted download or a tampered mirror. Yields (war URL, pinned SHA-256)."""
    with tempfile.TemporaryDirectory() as tmp:
        war = Path(tmp) / "war-stable" / VERSION / "jenkins.war"
        war.parent.mkdir(parents=True)
        war.write_bytes(b"PK\x03\x04 not jenkins")
        pinned = hashlib.sha256(war.read_bytes() + b"the real one").hexdigest()
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp)
        server = http.server.ThreadingHTTPServer((str(lab.gateway), 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield (
                f"http://{lab.gateway}:{server.server_port}/war-stable/{VERSION}/jenkins.war",
                pinned,
            )
        finally:
            server.shutdown()
            server.server_close()


def extra_vars(tmp_path: Path, **values: object) -> list[str]:
    plugins = [{"name": n, "version": "1.0", "sha256": "0" * 64} for n in REQUIRED]
    path = tmp_path / "jenkins-vars.json"
    path.write_text(json.dumps({"jenkins_version": VERSION, "jenkins_plugins": plugins, **values}))
    return ["-e", f"@{path}"]


STATE = "ls -la /opt /etc/nftables.d /etc/systemd/system 2>&1"


def test_a_war_that_fails_its_sha256_is_refused_and_nothing_is_installed(
    converged, lab, jenkins_host, tampered_mirror, tmp_path
):
    url, pinned = tampered_mirror
    recap = run_playbook(
        "jenkins.yml",
        limit=jenkins_host,
        extra=extra_vars(tmp_path, jenkins_war_url=url, jenkins_war_sha256=pinned),
        echo=False,
    )
    output = recap.output
    assert recap.returncode != 0, f"a tampered war was accepted:\n{output[-2000:]}"
    assert recap.hosts[jenkins_host]["failed"] == 1, recap.hosts
    failure = output[output.index("fatal:") :] if "fatal:" in output else output[-2000:]
    assert "Download the Jenkins war" in output and "did not match" in failure, failure
    assert pinned in failure, failure
    for path in (f"/opt/jenkins/jenkins-{VERSION}.war", "/etc/systemd/system/jenkins.service"):
        assert run_on(lab, jenkins_host, f"test -e {path}", check=False).returncode != 0, path
    # The download comes first: the firewall was not opened for a war that was refused.
    nft = run_on(lab, jenkins_host, "test -e /etc/nftables.d/jenkins.nft", check=False)
    assert nft.returncode != 0, "the firewall was opened before the war was checked"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("jenkins_war_sha256", "not-a-digest"),
        ("jenkins_admin_networks", ["0.0.0.0/0"]),
        ("jenkins_sync_token", "plain-password"),
    ],
)
def test_bad_variable_stops_the_run_before_any_change(
    converged, lab, jenkins_host, tampered_mirror, tmp_path, variable, value
):
    url, pinned = tampered_mirror
    values = {"jenkins_war_url": url, "jenkins_war_sha256": pinned, variable: value}
    before = run_on(lab, jenkins_host, STATE, check=False).stdout
    recap = assert_refused_before_any_change(
        "jenkins.yml", extra_vars(tmp_path, **values), variable, limit=jenkins_host
    )
    assert "Download the Jenkins war" not in recap.output
    assert run_on(lab, jenkins_host, STATE, check=False).stdout == before


def test_a_missing_war_url_is_named_before_any_change(converged, jenkins_host, tmp_path):
    assert_refused_before_any_change(
        "jenkins.yml", extra_vars(tmp_path), "jenkins_war_url", limit=jenkins_host
    )
