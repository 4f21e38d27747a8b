"""Hostile at import: a thread that spins from the import on, and 32 MiB held from then. Imported by
a child armed for it, this ran between runs with no rlimits and no accounting."""

import os
import resource
import stat
import threading
import time

from rh_sdk import ResultHandler

HELD = bytearray(32 << 20)
for _page in range(0, len(HELD), 4096):
    HELD[_page] = 1  # resident, not just reserved


def _spin():
    while True:
        pass


threading.Thread(target=_spin, daemon=True).start()

AT_IMPORT = {
    "imported_at": time.time(),
    "by_a_waiting_child": stat.S_ISCHR(os.fstat(0).st_mode),  # stdin is /dev/null until the request
    "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
    "rlimit_cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
}


class BusyAtImport(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return AT_IMPORT
