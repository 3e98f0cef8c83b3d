"""``features.user_engagement`` without its declared I/O, for the parse benchmarks' chains.

The parse benchmark builds chains of M identical stages; the real component requires the
extract's ``data`` artifact, which its own outputs are not, so ``mlpipe validate`` would refuse
such a chain. Same ``Config`` (so the same validation work at parse time) and ``run``.
"""

from airflow_mlpipe.components.features.user_engagement import Config, cache, run

__all__ = ["Config", "cache", "run"]
