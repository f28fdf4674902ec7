"""All Solr access. Documents follow the `cloudfetch` core's schema, which the solr role ships
(roles/solr/files/cores/cloudfetch/conf/schema.xml): id, user_id, name, path, size."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pysolr

from cloudfetch.config import Settings
from cloudfetch.models import StoredFile

TIMEOUT_SECONDS = 2.0

_SEPARATORS = re.compile(r"[._\-\[\]()]+")


class SearchUnavailable(Exception):
    pass


def document_id(file_id: int) -> str:
    return f"file-{file_id}"


def file_id(document_id: str) -> int:
    return int(document_id.removeprefix("file-"))


def file_document(stored: StoredFile) -> dict[str, object]:
    # `name` is the whole relative path, so a folder's name finds its files too; the core's
    # analyzer splits release names ("Big.Buck_Bunny-1080p.mkv") on punctuation and case.
    return {
        "id": document_id(stored.id),
        "user_id": stored.user_id,
        "name": stored.path,
        "path": stored.path,
        "size": stored.size,
    }


def quote_term(term: str) -> str:
    """User text as one quoted term: inside quotes nothing is syntax, not even AND/OR/NOT."""
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Query:
    q: str
    fq: str


def build_query(user_id: int, text: str) -> Query:
    """Every term must match the file's name; results are always limited to one user."""
    terms = [t for t in _SEPARATORS.sub(" ", text).split() if t]
    if not terms:
        raise ValueError("empty search")
    q = "name:(" + " AND ".join(quote_term(t) for t in terms) + ")"
    return Query(q=q, fq=f"user_id:{int(user_id)}")


class FileIndex:
    def __init__(
        self,
        solr_url: str,
        timeout: float = TIMEOUT_SECONDS,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self._solr = pysolr.Solr(solr_url, timeout=timeout, always_commit=False, auth=auth)

    @classmethod
    def for_settings(cls, settings: Settings, timeout: float = TIMEOUT_SECONDS) -> FileIndex:
        return cls(settings.solr_url, timeout=timeout, auth=settings.solr_auth)

    def ping(self) -> None:
        try:
            self._solr.ping()
        except (pysolr.SolrError, OSError) as exc:
            raise SearchUnavailable(str(exc)) from exc

    def add(self, files: Iterable[StoredFile]) -> None:
        docs = [file_document(f) for f in files]
        if docs:
            self._call(self._solr.add, docs, commitWithin=1000)

    def remove(self, file_ids: Iterable[int]) -> None:
        ids = [document_id(i) for i in file_ids]
        if ids:
            self._call(self._solr.delete, id=ids, commit=True)

    def search(self, user_id: int, text: str, rows: int = 50) -> list[int]:
        query = build_query(user_id, text)
        results = self._call(self._solr.search, query.q, fq=query.fq, fl="id", rows=rows)
        return [file_id(doc["id"]) for doc in results]

    def _call(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(*args, **kwargs)
        except (pysolr.SolrError, OSError) as exc:
            raise SearchUnavailable(str(exc)) from exc
