"""The pager's code (monitoring/pager), imported here from the same files roles/munin ships to the
monitoring hosts, where they run as the package `pager` (its modules import each other by that
name). The control machine thus builds, spools and sends events exactly as munin-limits' contact
does: one implementation of the spool, the capped retries and the silences."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from fetchfleet.inventory import REPO

PAGER_DIR = REPO / "monitoring" / "pager"


def _package() -> ModuleType:
    loaded = sys.modules.get("pager")
    if loaded is not None:
        where = Path(loaded.__file__ or "").resolve().parent
        if where != PAGER_DIR:
            raise ImportError(f"another module named pager is loaded ({where}), not {PAGER_DIR}")
        return loaded
    spec = importlib.util.spec_from_file_location(
        "pager", PAGER_DIR / "__init__.py", submodule_search_locations=[str(PAGER_DIR)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the pager from {PAGER_DIR}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pager"] = module
    spec.loader.exec_module(module)
    return module


_package()
cli = importlib.import_module("pager.cli")
deliver = importlib.import_module("pager.deliver")
events = importlib.import_module("pager.events")
silence = importlib.import_module("pager.silence")
spool = importlib.import_module("pager.spool")
