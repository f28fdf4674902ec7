"""Whether the lab tests may take the lab: they start from fresh hosts (every host destroyed and
booted again) and power the lab off at the end, so a lab someone else brought up is never taken
without being asked.

    FETCHFLEET_LAB_KEEP=1      test the running lab as it is, and leave it up
    FETCHFLEET_LAB_REPLACE=1   destroy it and start from fresh hosts (as `fab lab.down` first does)

`make test` runs this first (`python tests/lab/labguard.py`), so it refuses in a second instead of
after the unit stages; tests/lab/conftest.py asks the same before it touches a host. A lab that is
powered off (`fab lab.down`) is nobody's running lab: its hosts are destroyed and made afresh.

The one running lab it takes unasked is the one `make lab` made (it leaves a mark: `python
tests/lab/labguard.py --mark`), so that `make lab` then `make test` — a newcomer's first two
commands — both work; it says so first, naming FETCHFLEET_LAB_KEEP=1 to test that lab as it is.
Anything else that brought hosts up since (a `fab lab.up`, a test session) clears the mark.
"""

from __future__ import annotations

import os
import sys

from fetchfleet import lab as L


def mode() -> str:
    """keep, replace or fresh (the default), from the environment."""
    keep = os.environ.get("FETCHFLEET_LAB_KEEP") == "1"
    replace = os.environ.get("FETCHFLEET_LAB_REPLACE") == "1"
    if keep and replace:
        raise L.LabError(
            "FETCHFLEET_LAB_KEEP=1 (test the running lab, leave it up) and "
            "FETCHFLEET_LAB_REPLACE=1 (destroy it, start afresh) contradict each other",
            hint="set one of them",
        )
    return "keep" if keep else "replace" if replace else "fresh"


MARK = L.MAKE_LAB_MARK


def made_by_make_lab(lab: L.Lab) -> bool:
    return (lab.state_dir / MARK).exists()


def running_hosts(lab: L.Lab) -> list[str]:
    """The lab's hosts that are running now (their nspawn recorded under the lab's state dir)."""
    return [host.name for host in lab.hosts if L.host_state(lab, host.name) == "running"]


def refusal(lab: L.Lab, how: str) -> str | None:
    """Why this test session may not take the lab (None: it may), with the two ways on."""
    if how != "fresh":
        return None
    running = running_hosts(lab)
    if not running or made_by_make_lab(lab):
        return None
    return (
        f"{len(running)} of the lab's {len(lab.hosts)} hosts are running ({', '.join(running)}), "
        "and this test session did not start them. The lab tests begin from fresh hosts: they "
        "would destroy these hosts, their disks included, and power the lab off at the end.\n"
        "  test the running lab as it is, and leave it up:  FETCHFLEET_LAB_KEEP=1 make test\n"
        "  destroy it and test on fresh hosts:               FETCHFLEET_LAB_REPLACE=1 make test\n"
        "                                                    (or `fab lab.down` first)"
    )


def main() -> int:
    if sys.argv[1:] == ["--mark"]:
        lab = L.load_lab()
        (lab.state_dir / MARK).write_text("the lab `make lab` made: make test may rebuild it\n")
        return 0
    try:
        lab = L.load_lab()
        how = mode()
        reason = refusal(lab, how)
        if reason is None and how == "fresh" and running_hosts(lab) and made_by_make_lab(lab):
            print(
                "make test: the lab `make lab` made is rebuilt from fresh hosts for the tests and "
                "powered off at the end (FETCHFLEET_LAB_KEEP=1 make test tests it as it is instead)"
            )
    except L.LabError as err:
        print(err, file=sys.stderr)
        return 2
    if reason:
        print(f"lab: refusing to start the lab tests: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
