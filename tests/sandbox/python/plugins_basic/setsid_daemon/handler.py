import os
import time

from core.result_handlers.base import ResultHandler


class Daemonize(ResultHandler):
    """Leaves a double-forked setsid daemon behind, and logs its pid so the test can look for it."""

    def handle(self, batch_id, results, metadata):
        read_end, write_end = os.pipe()
        if os.fork() == 0:  # first child
            os.setsid()
            pid = os.fork()
            if pid == 0:  # the daemon
                os.close(read_end)
                os.close(write_end)
                while True:
                    time.sleep(1)
            os.write(write_end, str(pid).encode())
            os._exit(0)
        os.close(write_end)
        daemon_pid = int(os.read(read_end, 32))
        os.wait()
        self.logger.info("daemon started", extra={"daemon_pid": daemon_pid})
        return {"daemon_pid": daemon_pid}
