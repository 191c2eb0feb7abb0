"""Run the real topology natively (no Docker): private Redis, MariaDB, gateways, persister and
nginx from local binaries, in a work folder. Used by ``make stack``, the e2e tests and the bench.
"""
