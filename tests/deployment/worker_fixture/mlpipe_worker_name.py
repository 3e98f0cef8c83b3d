"""``[core] hostname_callable`` for the deployment tests: a worker's name instead of the machine's.

Every worker of a test cluster runs on this one machine; named, the REST API's task instances
say which worker ran them. Processes without a name (scheduler, api-server) report the machine.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("MLPIPE_TEST_WORKER_NAME") or socket.getfqdn()
