"""``python -m bench.soak`` (``make soak``): a bounded soak of the native stack, looking for leaks.

A stack (``SOAK_GATEWAYS`` = 3 gateways, Redis broker, a persister, MariaDB, nginx) gets steady
traffic from the load generator (``SOAK_USERS`` users spread over ``SOAK_ROOMS`` rooms, sending
``SOAK_RATE`` messages/s in all) and, at the same time, churn: ``SOAK_CHURN_PER_S`` short-lived
clients a second (websockets, through nginx) that join one of the rooms, send one message, wait
for its echo and leave, alternately cleanly (``leave`` + close 1000) and abruptly (the TCP
connection dropped without a close frame). Everything runs for ``SOAK_SECONDS`` (the first
``SOAK_WARMUP_S`` of them a warm-up).

Each service process is measured three times: idle (stack up, no client yet), start (after the
warm-up, under load) and end (traffic stopped, ``SOAK_SETTLE_S`` later): RSS and open files of
every process, ``chat_asyncio_tasks``/``chat_connections``/``chat_local_rooms`` of each gateway,
Redis's keys (by kind) and the persister's backlog. Suspicious growth is flagged, not failed.

The exit code is non-zero when verification fails: the load generator saw a gap, a duplicate or a
missing echo, a churn client lost its echo, or MariaDB does not hold exactly the messages sent
(per room: seq 1..N once each, N = the room's seq in Redis; in all: as many rows as sends).
The table goes to ``bench/results/soak-<timestamp>.md`` (``SOAK_OUT``: another file).

Modules: ``settings`` (SOAK_*), ``churn`` and ``client`` (the short-lived clients), ``probe``,
``processes`` and ``keyspace`` (the snapshots), ``store`` (MariaDB against Redis), ``leaks``
(what is flagged), ``tables`` and ``report`` (the page), ``run`` (the whole soak).
"""
