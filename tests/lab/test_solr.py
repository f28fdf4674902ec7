"""Solr on the lab's `solr` hosts (roles/solr, playbooks/solr.yml), tested for real.

Converges playbooks/solr.yml (maven install source in the lab), converges it again (changed=0),
then talks to the real Solr over HTTP from the control machine (the lab inventory lets the
gateway in), checks the service, the layout and the firewall from allowed and refused hosts, and
that bad variables stop the run before any change.

    FETCHFLEET_LAB_KEEP=1 pytest tests/lab/test_solr.py
    (add FETCHFLEET_SKIP_CONVERGE=1 to skip site.yml; this file still converges solr.yml)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import shlex
import subprocess
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.lab import run_on, secret
from fetchfleet.playbook import Recap, run_playbook

from badvars import assert_refused_before_any_change

PORT = 8983
CORE = "cloudfetch"
CORE_CONF = REPO / "roles" / "solr" / "files" / "cores" / CORE / "conf"
DATA_DIR = "/var/solr/data"


@pytest.fixture(scope="module")
def solr_hosts():
    hosts = load_fleet("lab").group("solr")
    assert hosts, "the lab inventory has no host in group solr"
    return hosts


@pytest.fixture(scope="module")
def first_converge(converged) -> Recap:
    """playbooks/solr.yml converged: the session's site.yml run (which imports it after common's
    firewall), or solr.yml itself when FETCHFLEET_SKIP_CONVERGE=1 skipped that."""
    if converged is not None:
        return converged
    recap = run_playbook("solr.yml")
    assert recap.ok, f"playbooks/solr.yml failed: {recap.hosts}"
    return recap


@pytest.fixture(scope="module")
def solr_url(first_converge, solr_hosts) -> str:
    return f"http://{solr_hosts[0].address}:{PORT}/solr/{CORE}"


def _on(lab, name: str, command: str) -> subprocess.CompletedProcess:
    return run_on(lab, name, command, check=False)


ADMIN, APP = "solr-admin", "cloudfetch"  # the role's solr_admin_username, playbooks/solr.yml


def _user(name: str) -> tuple[str, str]:
    """A Solr user and its password, as the lab generated it."""
    return name, secret({ADMIN: "solr_admin", APP: "solr_cloudfetch"}[name])


def _request(url: str, user: str | None, body: object | None, spoil: bool = False):
    """A request as `user` (None: without credentials); `spoil` sends a wrong password."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if user:
        name, password = _user(user)
        token = f"{name}:{password}{'x' if spoil else ''}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    return urllib.request.Request(url, data=data, headers=headers)


def _status(url: str, user: str | None, body: object | None = None, spoil: bool = False) -> int:
    """The HTTP status of one request to Solr (the password never shows in a failure)."""
    try:
        with urllib.request.urlopen(_request(url, user, body, spoil), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _http(url: str, body: object | None = None, user: str = APP) -> dict:
    with urllib.request.urlopen(_request(url, user, body), timeout=30) as response:
        return json.load(response)


def _select(solr_url: str, **params: str) -> dict:
    return _http(f"{solr_url}/select?{urllib.parse.urlencode({**params, 'wt': 'json'})}")


def test_converge_reaches_every_solr_host(first_converge, solr_hosts):
    assert {h.name for h in solr_hosts} <= set(first_converge.hosts)


def test_service_runs_as_solr_under_systemd(first_converge, host, solr_hosts):
    for solr in solr_hosts:
        remote = host(solr.name)
        service = remote.service("solr")
        assert service.is_running, f"{solr.name}: solr.service is not running"
        assert service.is_enabled, f"{solr.name}: solr.service is not enabled"
        pid = remote.check_output("systemctl show --value -p MainPID solr")
        assert remote.check_output(f"ps -o user= -p {pid}") == "solr"
        assert remote.user("solr").shell == "/usr/sbin/nologin"
        assert remote.socket(f"tcp://0.0.0.0:{PORT}").is_listening


def test_core_layout_and_config_come_from_the_repository(first_converge, host, solr_hosts):
    for solr in solr_hosts:
        remote = host(solr.name)
        assert remote.file(f"{DATA_DIR}/solr.xml").exists
        assert remote.file(f"{DATA_DIR}/{CORE}/core.properties").contains(f"^name={CORE}$")
        for conf in CORE_CONF.iterdir():
            conf_file = remote.file(f"{DATA_DIR}/{CORE}/conf/{conf.name}")
            assert conf_file.sha256sum == hashlib.sha256(conf.read_bytes()).hexdigest(), conf.name
        assert remote.file(f"{DATA_DIR}/{CORE}/data/index").is_directory
        assert remote.file("/opt/solr").is_symlink
        # The lab uses the maven install source: the server was built on the control machine.
        assert remote.file("/opt/solr/BUILD-INFO.json").exists
        status = _http(
            f"http://{solr.address}:{PORT}/solr/admin/cores?action=STATUS&core={CORE}&wt=json",
            user=ADMIN,
        )
        assert status["status"][CORE]["instanceDir"].rstrip("/") == f"{DATA_DIR}/{CORE}"
        assert status["initFailures"] == {}


def test_core_answers_select_after_update(solr_url):
    marker = uuid.uuid4().hex[:10]
    doc = {
        "id": f"test-{marker}",
        "user_id": 424242,
        "name": f"Ubuntu.22.04-desktop-{marker}.ISO",
        "path": f"/iso/Ubuntu.22.04-desktop-{marker}.ISO",
        "size": 4_700_000_000,
        "created": "2026-01-02T03:04:05Z",
    }
    try:
        assert _http(f"{solr_url}/update?commit=true", [doc])["responseHeader"]["status"] == 0
        # Tokenized name: punctuation, digits and case split; the string copy matches exactly.
        found = _select(solr_url, q=f"ubuntu desktop {marker} iso", fq="user_id:424242")
        assert found["response"]["numFound"] == 1
        hit = found["response"]["docs"][0]
        assert {k: hit[k] for k in doc} == doc
        exact = _select(solr_url, q=f'name_str:"{doc["name"]}"', rows="0")
        assert exact["response"]["numFound"] == 1
        other_user = _select(solr_url, q=marker, fq="user_id:1")
        assert other_user["response"]["numFound"] == 0
    finally:
        _http(f"{solr_url}/update?commit=true", {"delete": {"id": doc["id"]}})
    assert _select(solr_url, q=f"id:{doc['id']}")["response"]["numFound"] == 0


def test_core_rejects_fields_outside_the_schema(solr_url):
    with pytest.raises(urllib.error.HTTPError) as error:
        _http(f"{solr_url}/update", [{"id": "x", "user_id": 1, "name": "x", "colour": "red"}])
    assert error.value.code == 400


def test_every_request_needs_a_known_user(solr_url, solr_hosts):
    admin = f"http://{solr_hosts[0].address}:{PORT}/solr/admin/cores?action=STATUS&wt=json"
    for url in (f"{solr_url}/select?q=*:*", f"{solr_url}/admin/ping", admin):
        assert _status(url, None) == 401, url
        assert _status(url, APP, spoil=True) == 401, url
        assert _status(url, ADMIN, spoil=True) == 401, url


def test_the_app_user_reads_and_updates_but_does_not_administer(solr_url, solr_hosts):
    assert _status(f"{solr_url}/select?q=*:*", APP) == 200
    assert _status(f"{solr_url}/admin/ping", APP) == 200
    assert _status(f"{solr_url}/admin/ping/", APP) == 200  # as pysolr asks
    assert _status(f"{solr_url}/update?commit=true", APP, {"delete": {"id": "none"}}) == 200
    base = f"http://{solr_hosts[0].address}:{PORT}/solr"
    for url in (f"{base}/admin/cores?action=STATUS&wt=json", f"{solr_url}/config?wt=json"):
        assert _status(url, APP) == 403, url
        assert _status(url, ADMIN) == 200, url


def test_security_json_holds_hashes_only(first_converge, host, solr_hosts):
    for solr in solr_hosts:
        remote = host(solr.name)
        security = remote.file(f"{DATA_DIR}/security.json")
        assert (security.user, security.group, security.mode) == ("root", "solr", 0o640)
        content = security.content_string
        leaked = [name for name in (APP, ADMIN) if _user(name)[1] in content]
        assert not leaked, f"plaintext password of {leaked} in security.json"
        stored = json.loads(content)["authentication"]["credentials"]
        assert sorted(stored) == sorted([APP, ADMIN])
        for name, entry in stored.items():  # Solr's form: base64(sha256(sha256(salt+pw))) salt
            digest, salt = (base64.b64decode(part) for part in entry.split())
            inner = hashlib.sha256(salt + _user(name)[1].encode()).digest()
            assert hashlib.sha256(inner).digest() == digest, name


def _connects(lab, source: str, address: str) -> bool:
    probe = (
        "import socket; s = socket.socket(); s.settimeout(3); "
        f"print('open' if s.connect_ex(({address!r}, {PORT})) == 0 else 'closed')"
    )
    result = _on(lab, source, f"python3 -c {shlex.quote(probe)}")
    assert result.returncode == 0, f"{source}: probe failed: {result.stderr}"
    return result.stdout.strip() == "open"


def test_firewall_lets_web_and_workers_in_and_keeps_db_out(first_converge, lab, solr_hosts):
    fleet = load_fleet("lab")
    allowed = [fleet.group("web")[0].name, fleet.group("workers")[0].name]
    refused = fleet.group("db_primary")[0].name
    for solr in solr_hosts:
        for source in allowed:
            assert _connects(lab, source, solr.address), f"{source} cannot reach {solr.name}"
        assert not _connects(lab, refused, solr.address), f"{refused} reaches {solr.name}"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("solr_install_source", "ftp"),
        ("solr_heap", "lots"),
        ("solr_heap", "512"),
        ("solr_version", "8.11.2"),
        ("solr_admin_password", "short"),
        ("solr_admin_username", "bad:name"),
    ],
)
def test_bad_variable_stops_the_run_before_any_change(
    first_converge, lab, solr_hosts, variable, value
):
    files = f"/etc/systemd/system/solr.service {DATA_DIR}/security.json"
    before = {s.name: _on(lab, s.name, f"stat -c %Y {files}").stdout for s in solr_hosts}
    assert_refused_before_any_change("solr.yml", {variable: value}, variable)
    after = {s.name: _on(lab, s.name, f"stat -c %Y {files}").stdout for s in solr_hosts}
    assert before == after


@pytest.fixture
def tampered_mirror(lab) -> Iterator[tuple[str, str]]:
    """A mirror on the control machine with Apache's layout (VERSION/solr-VERSION.tgz plus its
    .sha512 in sha512sum format) whose archive does not match its published SHA-512, as after a
    corrupted download or a tampered mirror. Yields (mirror URL, version)."""
    version = "9.10.1"
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / version
        release.mkdir()
        archive = release / f"solr-{version}.tgz"
        with tarfile.open(archive, "w:gz") as tar:
            script = tarfile.TarInfo(f"solr-{version}/bin/solr")
            body = b"#!/bin/sh\necho not solr\n"
            script.size, script.mode = len(body), 0o755
            tar.addfile(script, io.BytesIO(body))
        published = hashlib.sha512(archive.read_bytes() + b"the real one").hexdigest()
        (release / f"{archive.name}.sha512").write_text(f"{published}  {archive.name}\n")
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp)
        server = http.server.ThreadingHTTPServer((str(lab.gateway), 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://{lab.gateway}:{server.server_port}", version
        finally:
            server.shutdown()
            server.server_close()


def test_archive_source_refuses_an_archive_that_fails_its_sha512(
    first_converge, lab, solr_hosts, solr_url, tampered_mirror
):
    """The default install source (Solr's release archive) is exercised up to its checksum: the
    archive and its .sha512 are fetched from the configured mirror, they disagree, and the run
    stops there; the installed Solr keeps its link, its files and its service."""
    mirror, version = tampered_mirror
    solr = solr_hosts[0].name
    state = "readlink /opt/solr; ls /var/cache/fetchfleet; systemctl show -p MainPID --value solr"
    before = _on(lab, solr, state).stdout
    archive = f"solr_install_source=archive solr_archive_mirror={mirror} solr_version={version}"
    recap = run_playbook("solr.yml", limit=solr, extra=["-e", archive], echo=False)
    output = recap.output
    assert recap.returncode != 0, f"a tampered archive was accepted:\n{output[-2000:]}"
    assert recap.hosts[solr]["failed"] == 1 and recap.hosts[solr]["changed"] == 0, recap.hosts
    failure = output[output.index("fatal:") :] if "fatal:" in output else output[-2000:]
    assert "Download the release archive" in output and "did not match" in failure, failure
    assert f"{mirror}/{version}/solr-{version}.tgz" in failure, failure
    assert _on(lab, solr, state).stdout == before
    assert _on(lab, solr, f"test -e /opt/solr-{version}/bin/solr").returncode != 0
    assert _select(solr_url, q="*:*")["responseHeader"]["status"] == 0
