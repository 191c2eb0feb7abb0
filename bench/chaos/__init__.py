"""``python -m bench.chaos`` (``make chaos``): the native stack under steady traffic while a
seeded random schedule of faults hits it, then a check that nothing acknowledged was lost,
duplicated or given a seq another message has.

A stack (``CHAOS_GATEWAYS`` = 3 gateways, a persister, Redis with AOF ``appendfsync everysec``
— one server, or a local cluster with ``CHAOS_REDIS=cluster`` —, MariaDB, nginx) gets
``CHAOS_USERS`` clients in ``CHAOS_ROOMS`` rooms, each sending ``CHAOS_RATE`` messages/s for
``CHAOS_SECONDS``. Meanwhile faults of the kinds in ``CHAOS_FAULTS`` (default: every kind that
fits the Redis mode) are injected at random gaps drawn from ``CHAOS_SEED``: Redis SIGKILL and
restart from its AOF, a cluster primary SIGKILL and restart, persister SIGKILL and restart,
gateway SIGKILL and restart, MariaDB restart, nginx reload. After the traffic, the clients and
the store are given ``CHAOS_DRAIN_S`` to catch up, and the verdict compares every client's log
with every row (``verify``). The report goes to ``bench/results/chaos-<timestamp>.md``; the exit
code is 1 on FAIL. See docs/chaos.md.

Modules: ``settings`` (CHAOS_*), ``schedule`` (the seeded plan), ``faults`` (one function per
kind), ``client`` and ``traffic`` (the clients, on a thread of their own), ``records`` (what is
logged), ``store`` (the rows), ``verify`` and ``recovery`` (pure), ``report``, ``run``.
"""
