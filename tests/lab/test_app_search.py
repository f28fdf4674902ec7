"""The app's own Solr client against the real `cloudfetch` core the solr role ships.

The app (app/, its own venv) and the core's schema (roles/solr) are written apart; this proves
they agree: documents the app builds are accepted, and its queries find the user's files only.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

from fetchfleet.inventory import REPO
from fetchfleet.lab import secret

APP_PYTHON = REPO / ".venv-app" / "bin" / "python"

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from cloudfetch.models import StoredFile
    from cloudfetch.search import FileIndex

    user, password = sys.stdin.read().split(":", 1)  # the app's Solr user, off the command line
    index = FileIndex(sys.argv[1], timeout=5, auth=(user, password))
    index.ping()
    files = [
        StoredFile(id=900001, user_id=1, path="Films/Big.Buck_Bunny-1080p.mkv", size=10),
        StoredFile(id=900002, user_id=1, path="Films/Sintel.2010.mkv", size=20),
        StoredFile(id=900003, user_id=2, path="Other/Big.Buck.Bunny.avi", size=30),
    ]
    index.add(files)
    found = []
    for _ in range(50):  # the app commits within 1 s
        found = index.search(1, "buck bunny")
        if found:
            break
        time.sleep(0.2)
    by_folder = index.search(1, "films")
    index.remove([f.id for f in files])
    after = index.search(1, "buck bunny")
    print(json.dumps({"found": found, "by_folder": sorted(by_folder), "after": after}))
""")


def test_app_indexes_and_searches_the_real_core(lab, converged):
    solr = next(h for h in lab.hosts if "solr" in h.groups)
    url = f"http://{solr.address}:8983/solr/cloudfetch"
    proc = subprocess.run(
        [str(APP_PYTHON), "-c", SCRIPT, url],
        input=f"cloudfetch:{secret('solr_cloudfetch')}",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["found"] == [900001], "only user 1's Big Buck Bunny, not user 2's"
    assert result["by_folder"] == [900001, 900002]
    assert result["after"] == []
