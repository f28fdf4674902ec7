"""The jobs of jenkins/jobs, rendered by Jenkins Job Builder and kept in step on a controller.

`render` runs `jenkins-jobs test` (JJB renders the XML offline, exactly as its `update` would
send it) over jenkins/jobs plus one generated file of site values (the repository URL, the
environments: `site` below), and stamps each job's description with the SHA-256 of its XML.

`sync` is JJB's update with python-jenkins under it — create what is missing, reconfigure what
changed, delete the JJB-managed jobs no longer defined — except for how it decides "changed":
JJB keeps a cache of what it last sent under the home directory of whoever ran it, which is
wrong the moment a second machine, a rebuilt controller or a restored backup is involved. Here
the controller itself holds the answer: the digest in each job's description is compared with
the rendered one, so a second sync sends nothing, from anywhere. Jobs without JJB's marker
(made by hand in the UI) are never touched.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fetchfleet.inventory import REPO

JOBS = REPO / "jenkins" / "jobs"
# Jenkins Job Builder ends the description of every job it manages with this.
MANAGED = "<!-- Managed by Jenkins Job Builder -->"
_DIGEST = re.compile(r"<!-- fetchfleet-jobs sha256:([0-9a-f]{64}) -->")


class JobsError(Exception):
    pass


def site_defaults(values: dict[str, str], jobs_dir: Path = JOBS) -> dict:
    """The `global` defaults of jenkins/jobs with the site's values over them. JJB lets the last
    definition of a defaults block win whole, so the site file repeats every key."""
    for path in sorted(jobs_dir.glob("*.yaml")):
        for item in yaml.safe_load(path.read_text()) or []:
            block = item.get("defaults") if isinstance(item, dict) else None
            if block and block.get("name") == "global":
                unknown = sorted(set(values) - set(block))
                if unknown:
                    raise JobsError(
                        f"site values {', '.join(unknown)} are not job variables "
                        f"(known: {', '.join(sorted(k for k in block if k != 'name'))})"
                    )
                return {**block, **values}
    raise JobsError(f"no `defaults: global` block in {jobs_dir}")


def _jjb(*args: str) -> list[str]:
    local = Path(sys.executable).parent / "jenkins-jobs"
    return [str(local) if local.exists() else "jenkins-jobs", *args]


def render_raw(site: dict[str, str] | None = None, jobs_dir: Path = JOBS) -> dict[str, str]:
    """Job name -> config.xml, as `jenkins-jobs test` renders them (no server involved)."""
    with tempfile.TemporaryDirectory(prefix="fetchfleet-jobs-") as tmp:
        paths = str(jobs_dir)
        if site:
            site_dir = Path(tmp) / "site"
            site_dir.mkdir()
            block = {"defaults": site_defaults(site, jobs_dir)}
            (site_dir / "site.yaml").write_text(yaml.safe_dump([block], sort_keys=False))
            paths += f":{site_dir}"
        conf = Path(tmp) / "jenkins_jobs.ini"
        conf.write_text("[job_builder]\nallow_duplicates=False\n")
        out = Path(tmp) / "out"
        argv = _jjb("--conf", str(conf), "test", "--config-xml", "-o", str(out), paths)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise JobsError(f"jenkins-jobs test failed:\n{proc.stderr.strip()[-3000:]}")
        return {
            str(p.parent.relative_to(out)): p.read_text() for p in sorted(out.rglob("config.xml"))
        }


def stamp(xml: str) -> tuple[str, str]:
    """(xml with its digest in the description, digest). The digest is of the XML as rendered."""
    digest = hashlib.sha256(xml.encode()).hexdigest()
    root = ET.fromstring(xml)
    desc = root.find("description")
    if desc is None:
        desc = ET.SubElement(root, "description")
    text = (desc.text or "").removesuffix(MANAGED)
    desc.text = f"{text}\n<!-- fetchfleet-jobs sha256:{digest} -->\n{MANAGED}"
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n', digest


@dataclass(frozen=True)
class Job:
    name: str
    xml: str  # stamped: what is sent to the controller
    digest: str

    def element(self) -> ET.Element:
        return ET.fromstring(self.xml)


def render(site: dict[str, str] | None = None, jobs_dir: Path = JOBS) -> dict[str, Job]:
    jobs = {}
    for name, raw in render_raw(site, jobs_dir).items():
        xml, digest = stamp(raw)
        jobs[name] = Job(name, xml, digest)
    return jobs


def description_of(xml: str) -> str:
    try:
        desc = ET.fromstring(xml.encode()).find("description")
    except ET.ParseError:
        return ""
    return (desc.text or "") if desc is not None else ""


def digest_of(xml: str) -> str | None:
    m = _DIGEST.search(description_of(xml))
    return m.group(1) if m else None


def is_managed(xml: str) -> bool:
    return description_of(xml).endswith(MANAGED)


@dataclass
class SyncPlan:
    create: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # on the server, not ours: left alone

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def plan(wanted: dict[str, Job], server: dict[str, str]) -> SyncPlan:
    """What a sync must do, from the rendered jobs and the server's config.xml per job name."""
    result = SyncPlan()
    for name, job in sorted(wanted.items()):
        if name not in server:
            result.create.append(name)
        elif digest_of(server[name]) != job.digest:
            result.update.append(name)
        else:
            result.unchanged.append(name)
    for name, xml in sorted(server.items()):
        if name not in wanted:
            (result.delete if is_managed(xml) else result.unmanaged).append(name)
    return result
