"""fetchfleet on a monitoring node: only replication.py, shipped by roles/munin for the plugins."""
