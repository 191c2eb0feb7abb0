"""Every experiment the report knows, in the order of its summary table.

Adding an experiment: a module here with an ``Experiment`` subclass, and one line below.
"""

from bench.report.experiments.base import Experiment
from bench.report.experiments.baseline import Baseline
from bench.report.experiments.broker import Broker
from bench.report.experiments.capacity import Capacity
from bench.report.experiments.cluster import Cluster
from bench.report.experiments.compare import Compare
from bench.report.experiments.idle import Idle
from bench.report.experiments.latency import Latency
from bench.report.experiments.peak import Peak
from bench.report.experiments.persister import Persister
from bench.report.experiments.rooms import Rooms
from bench.report.experiments.scaling import Scaling
from bench.report.experiments.sync import Sync

EXPERIMENTS: tuple[Experiment, ...] = (
    Scaling(),
    Sync(),
    Broker(),
    Cluster(),
    Peak(),
    Persister(),
    Capacity(),
    Idle(),
    Baseline(),
    Latency(),
    Rooms(),
    Compare(),
)

__all__ = ["EXPERIMENTS", "Experiment"]
