"""fetchfleet's side of monitoring (monitoring/README.md): pages from the control machine
(`fab monitor.page`, `monitor.test-page`), every alert's state read from the Munin master
(`fab monitor.status`), and silences during planned work (`fab deploy` and friends).

Modules: pagercode (monitoring/pager, the monitoring hosts' own pager code, imported here),
paging (events from this machine: spooled, sent), alerts (munin-limits' state), silence (the
monitoring hosts' silences and the context manager actions hold them with).
"""
