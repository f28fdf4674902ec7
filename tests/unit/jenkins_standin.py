"""A stand-in for a Jenkins controller's REST API, enough for Jenkins Job Builder and
python-jenkins to do their real work against it (there is no jenkins.war on any registry here).

It speaks what those clients send, as Jenkins answers it: `GET /` with `X-Jenkins`,
`/crumbIssuer/api/json` (and POSTs without the crumb are refused, as with CSRF protection on),
`/api/json` (jobs and views), `/me/api/json`, `/job/N/api/json`, `POST /createItem?name=N`,
`GET|POST /job/N/config.xml`, `POST /job/N/doDelete`, `POST /job/N/build[WithParameters]`
(201 + `Location: …/queue/item/K/`), the queue item, the build's JSON and its `consoleText`.
Every request needs HTTP Basic auth with the one user's API token (401 otherwise). Builds finish
the moment the queue hands them out, with the result a test set in `outcomes`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "2.479.3"


@dataclass
class Build:
    number: int
    result: str
    timestamp_ms: int
    duration_ms: int
    console: str
    parameters: dict[str, str]


@dataclass
class State:
    user: str
    token: str
    crumb: str = field(default_factory=lambda: secrets.token_hex(16))
    jobs: dict[str, str] = field(default_factory=dict)  # name -> config.xml
    builds: dict[str, list[Build]] = field(default_factory=dict)
    queue: dict[int, dict] = field(default_factory=dict)
    # name -> (result, console text) for the next builds of that job
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_queue_id: int = 1

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] == "POST"]


class Handler(BaseHTTPRequestHandler):
    state: State
    server_version = "Jetty(12.0.16)"

    def log_message(self, format: str, *args: object) -> None:
        pass

    # --- plumbing --------------------------------------------------------------------------

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def _send(self, code: int, body: bytes | str = b"", ctype: str = "text/plain", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("X-Jenkins", VERSION)
        self.send_header("Content-Type", f"{ctype};charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value), "application/json")

    def _authorized(self) -> bool:
        expected = f"{self.state.user}:{self.state.token}".encode()
        given = self.headers.get("Authorization", "")
        ok = given.startswith("Basic ") and base64.b64decode(given[6:] or b"") == expected
        if not ok:
            self._send(
                401,
                "Invalid password/token for user: " + self.state.user,
                headers={"WWW-Authenticate": 'Basic realm="Jenkins"'},
            )
        return ok

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        return parts, urllib.parse.parse_qs(url.query)

    # --- GET -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.state.requests.append(("GET", self.path))
        if not self._authorized():
            return
        parts, _ = self._route()
        with self.state.lock:
            self._get(parts)

    def _get(self, parts: list[str]) -> None:
        s = self.state
        if not parts:
            return self._send(200, "<html><body>Dashboard [Jenkins]</body></html>", "text/html")
        if parts == ["crumbIssuer", "api", "json"]:
            return self._json(
                {
                    "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                    "crumb": s.crumb,
                    "crumbRequestField": "Jenkins-Crumb",
                }
            )
        if parts == ["api", "json"]:
            return self._json(
                {
                    "_class": "hudson.model.Hudson",
                    "mode": "NORMAL",
                    "useCrumbs": True,
                    "useSecurity": True,
                    "jobs": [self._job_ref(n) for n in sorted(s.jobs)],
                    "views": [{"_class": "hudson.model.AllView", "name": "all", "url": self.base}],
                }
            )
        if parts == ["me", "api", "json"]:
            return self._json({"_class": "hudson.model.User", "id": s.user, "fullName": s.user})
        if parts[:2] == ["queue", "item"] and parts[3:] == ["api", "json"]:
            return self._queue_item(int(parts[2]))
        if len(parts) >= 2 and parts[0] == "job":
            return self._get_job(parts[1], parts[2:])
        self._send(404, "Not Found")

    def _job_ref(self, name: str) -> dict:
        builds = self.state.builds.get(name, [])
        color = "notbuilt" if not builds else ("blue" if builds[-1].result == "SUCCESS" else "red")
        return {
            "_class": "hudson.model.FreeStyleProject",
            "name": name,
            "url": f"{self.base}job/{urllib.parse.quote(name)}/",
            "color": color,
        }

    def _build_ref(self, name: str, build: Build | None) -> dict | None:
        if build is None:
            return None
        return {
            "_class": "hudson.model.FreeStyleBuild",
            "number": build.number,
            "url": f"{self.base}job/{name}/{build.number}/",
        }

    def _get_job(self, name: str, rest: list[str]) -> None:
        s = self.state
        if name not in s.jobs:
            return self._send(404, "Not Found")
        builds = s.builds.get(name, [])
        if rest == ["api", "json"]:
            last = builds[-1] if builds else None
            return self._json(
                {
                    **self._job_ref(name),
                    "fullName": name,
                    "buildable": True,
                    "inQueue": any(q["job"] == name and not q["done"] for q in s.queue.values()),
                    "nextBuildNumber": len(builds) + 1,
                    "builds": [self._build_ref(name, b) for b in reversed(builds)],
                    "lastBuild": self._build_ref(name, last),
                    "lastCompletedBuild": self._build_ref(name, last),
                }
            )
        if rest == ["config.xml"]:
            return self._send(200, s.jobs[name], "application/xml")
        if len(rest) >= 2 and rest[0].isdigit():
            number = int(rest[0])
            build = next((b for b in builds if b.number == number), None)
            if build is None:
                return self._send(404, "Not Found")
            if rest[1:] == ["consoleText"]:
                return self._send(200, build.console)
            if rest[1:] == ["api", "json"]:
                return self._json(
                    {
                        **(self._build_ref(name, build) or {}),
                        "result": build.result,
                        "building": False,
                        "timestamp": build.timestamp_ms,
                        "duration": build.duration_ms,
                        "displayName": f"#{build.number}",
                        "fullDisplayName": f"{name} #{build.number}",
                        "actions": [
                            {
                                "_class": "hudson.model.ParametersAction",
                                "parameters": [
                                    {"name": k, "value": v} for k, v in build.parameters.items()
                                ],
                            }
                        ],
                    }
                )
        self._send(404, "Not Found")

    def _queue_item(self, number: int) -> None:
        item = self.state.queue.get(number)
        if item is None:
            return self._send(404, "Not Found")
        answer = {"_class": "hudson.model.Queue$WaitingItem", "id": number, "task": item["job"]}
        if not item["polled"]:
            # The first look finds it waiting, as a real queue would for a moment.
            item["polled"] = True
            return self._json({**answer, "why": "Waiting for next available executor"})
        if not item["done"]:
            self._run(item)
        build = item["build"]
        return self._json(
            {
                **answer,
                "_class": "hudson.model.Queue$LeftItem",
                "executable": self._build_ref(item["job"], build),
            }
        )

    def _run(self, item: dict) -> None:
        name = item["job"]
        builds = self.state.builds.setdefault(name, [])
        result, console = self.state.outcomes.get(name, ("SUCCESS", "Finished: SUCCESS\n"))
        build = Build(
            len(builds) + 1, result, int(time.time() * 1000), 1500, console, item["params"]
        )
        builds.append(build)
        item["build"], item["done"] = build, True

    # --- POST ------------------------------------------------------------------------------

    def do_POST(self) -> None:
        self.state.requests.append(("POST", self.path))
        if not self._authorized():
            return
        body = self._body()
        if self.headers.get("Jenkins-Crumb") != self.state.crumb:
            return self._send(403, "No valid crumb was included in the request")
        parts, query = self._route()
        with self.state.lock:
            self._post(parts, query, body)

    def _post(self, parts: list[str], query: dict[str, list[str]], body: bytes) -> None:
        s = self.state
        if parts == ["createItem"]:
            name = query.get("name", [""])[0]
            if not name:
                return self._send(400, "Query parameter 'name' is required")
            if name in s.jobs:
                return self._send(400, f"A job already exists with the name '{name}'")
            s.jobs[name] = body.decode()
            return self._send(200)
        if len(parts) < 3 or parts[0] != "job":
            return self._send(404, "Not Found")
        name, action = parts[1], parts[2:]
        if name not in s.jobs:
            return self._send(404, "Not Found")
        if action == ["config.xml"]:
            s.jobs[name] = body.decode()
            return self._send(200)
        if action == ["doDelete"]:
            del s.jobs[name]
            s.builds.pop(name, None)
            return self._send(302, headers={"Location": self.base})
        if action in (["build"], ["buildWithParameters"]):
            params = {k: v[0] for k, v in query.items()}
            if body:
                params.update({k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()})
            number = s.next_queue_id
            s.next_queue_id += 1
            s.queue[number] = {"job": name, "params": params, "polled": False, "done": False}
            return self._send(201, headers={"Location": f"{self.base}queue/item/{number}/"})
        self._send(404, "Not Found")


class JenkinsStandin:
    """Start with `with JenkinsStandin(user, token) as jenkins:`; `jenkins.url`, `jenkins.state`."""

    def __init__(self, user: str = "fetchfleet-sync", token: str | None = None):
        self.state = State(user, token or secrets.token_hex(17))
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> JenkinsStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
