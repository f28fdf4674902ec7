"""A second converge of site.yml, after every other lab test, must change nothing: the second
converge of every playbook it imports (common, logs, solr, postgresql, rabbitmq, transmission,
lab_seeder, web, monitoring), on the state all the other tests leave."""

import pytest

from fetchfleet.playbook import run_playbook


@pytest.mark.converge_again
def test_second_converge_of_site_changes_nothing(lab, converged):
    recap = run_playbook("site.yml", echo=False)
    assert recap.ok, f"second converge failed: {recap.hosts}"
    print(
        f"\nFIGURE second converge of site.yml: {recap.seconds:.1f}s, changed={recap.total('changed')}"
    )
    assert recap.changed == {}, f"second converge changed things: {recap.changed}"
    assert set(recap.hosts) == {h.name for h in lab.hosts}
