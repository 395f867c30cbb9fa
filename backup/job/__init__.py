"""The job: what one scheduled job is and did, below the engines that run it. Its databases
(scope.py), its lock (one run per job: lock.py), what a run did (outcome.py: plain data every
engine, notifier and metric reads) and the runs before it (history.py: _state/status.json)."""
