"""fetchfleet-pager: munin-limits' contact. Reads alert messages from the contact pipe, turns
each field's state into a PagerDuty Events API v2 event (trigger on WARNING/CRITICAL/UNKNOWN,
resolve on OK), spools every event on disk and sends the spool in order with the maintained
`pagerduty` client. Nothing is lost: an event leaves the spool only once PagerDuty accepted it
(202) or refused it as invalid (400: kept in rejected/, logged).

Modules: message (the pipe's text format), events (message -> events, dedup keys, summaries,
links; reconciling with munin-limits' state), limits (munin-limits' state file), spool (the
on-disk queue, alert state, lock, backoff), deliver (the client and its capped retries), cli (the
commands munin-limits, the timer and operators run).
"""
