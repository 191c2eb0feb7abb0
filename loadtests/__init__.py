"""A load generator for the chat protocol: many virtual users in a few worker processes, each
verifying every frame it receives (gapless per-room seq, no duplicates, its own echoes).

``python -m loadtests --help`` runs it from the command line; :func:`loadtests.runner.run_load`
runs it from Python (the benchmark and the smoke test).
"""
