"""Solr index and query latency on the lab's `solr` host, for the cloudfetch core.

Indexes N small file documents (like the app's) in batches through /update, commits, then runs
Q name queries filtered by user (the app's query shape) and prints the figures. Bounded in count
and time; the documents are deleted again at the end. Prints figures, passes or fails nothing.

    python tests/bench/solr_bench.py                 # 10,000 docs, 200 queries
    python tests/bench/solr_bench.py --docs 2000 --queries 50
    python tests/bench/solr_bench.py --smoke         # 200 docs, 20 queries: checks the bench runs
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import random
import statistics
import time
from dataclasses import dataclass

from fetchfleet.inventory import load_fleet
from fetchfleet.lab import secret

CORE = "cloudfetch"
WORDS = [
    "ubuntu",
    "debian",
    "fedora",
    "arch",
    "movie",
    "series",
    "season",
    "episode",
    "album",
    "live",
    "concert",
    "lecture",
    "course",
    "backup",
    "photos",
    "holiday",
    "summer",
    "winter",
    "trailer",
    "remaster",
    "director",
    "cut",
    "soundtrack",
    "podcast",
    "report",
    "invoice",
    "draft",
    "final",
    "scan",
    "archive",
]
EXTENSIONS = ("mkv", "mp4", "iso", "flac", "mp3", "pdf", "zip", "jpg")
PREFIX = "bench-"


@dataclass(frozen=True)
class Figures:
    docs: int
    index_seconds: float
    commit_seconds: float
    latencies_ms: list[float]

    def lines(self) -> list[str]:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat)
        p95 = lat[max(0, round(0.95 * len(lat)) - 1)]
        return [
            f"documents indexed      {self.docs}",
            f"bulk index (no commit) {self.index_seconds:.2f} s "
            f"({self.docs / self.index_seconds:.0f} docs/s)",
            f"commit                 {self.commit_seconds * 1000:.0f} ms",
            f"queries                {len(lat)}",
            f"query latency p50      {p50:.1f} ms",
            f"query latency p95      {p95:.1f} ms",
            f"query latency max      {lat[-1]:.1f} ms",
        ]


class Solr:
    """One keep-alive HTTP connection to a core, so latency is Solr's, not TCP setup's."""

    def __init__(self, address: str, port: int, auth: tuple[str, str], core: str = CORE) -> None:
        self.conn = http.client.HTTPConnection(address, port, timeout=60)
        self.base = f"/solr/{core}"
        self.authorization = "Basic " + base64.b64encode(":".join(auth).encode()).decode()

    def post(self, path: str, body: object) -> dict:
        return self._request("POST", path, json.dumps(body).encode())

    def get(self, path: str) -> dict:
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: bytes | None) -> dict:
        headers = {"Authorization": self.authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, self.base + path, body=body, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {payload[:300]!r}")
        return json.loads(payload)


def make_docs(count: int, users: int, rng: random.Random) -> list[dict]:
    docs = []
    for i in range(count):
        words = rng.sample(WORDS, 3)
        name = f"{words[0].title()}.{words[1]}-{rng.randint(1, 99):02d}_{words[2]}"
        name += f".{rng.choice(EXTENSIONS)}"
        docs.append(
            {
                "id": f"{PREFIX}{i}",
                "user_id": 900_000 + i % users,
                "name": name,
                "path": f"/{words[0]}/{name}",
                "size": rng.randint(1_000, 5_000_000_000),
                "created": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
            }
        )
    return docs


def run(solr: Solr, docs: int, batch: int, queries: int, users: int, seed: int) -> Figures:
    rng = random.Random(seed)
    corpus = make_docs(docs, users, rng)
    t0 = time.perf_counter()
    for start in range(0, docs, batch):
        solr.post("/update", corpus[start : start + batch])
    index_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    solr.post("/update?commit=true", {})
    commit_seconds = time.perf_counter() - t0

    latencies = []
    for _ in range(queries):
        q = "+".join(rng.sample(WORDS, rng.choice((1, 2))))
        user = 900_000 + rng.randrange(users)
        t0 = time.perf_counter()
        solr.get(f"/select?q={q}&fq=user_id:{user}&rows=20&wt=json")
        latencies.append((time.perf_counter() - t0) * 1000)
    return Figures(docs, index_seconds, commit_seconds, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="lab")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--port", type=int, default=8983)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--smoke", action="store_true", help="200 docs, 20 queries: checks the bench runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.docs, args.batch, args.queries = 200, 100, 20

    host = load_fleet(args.env).group("solr")[0]
    # The app's Solr user (BasicAuth, as the app itself sends it).
    solr = Solr(host.address, args.port, ("cloudfetch", secret("solr_cloudfetch", args.env)))
    print(f"solr bench: {host.name} ({host.address}:{args.port}), core {CORE}")
    try:
        figures = run(solr, args.docs, args.batch, args.queries, args.users, args.seed)
    finally:
        solr.post("/update?commit=true", {"delete": {"query": f"id:{PREFIX}*"}})
    for line in figures.lines():
        print(f"  {line}")


if __name__ == "__main__":
    main()
