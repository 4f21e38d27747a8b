import os
import resource
import threading

from core.result_handlers.base import ResultHandler


class AsksTheMoon(ResultHandler):
    def handle(self, batch_id, results, metadata):
        release = threading.Event()
        started = []
        for _ in range(
            300 if self.config.get("spawn", True) else 0
        ):  # a thread is a task: the pids limit stops this early
            try:
                thread = threading.Thread(target=release.wait, daemon=True)
                thread.start()
            except RuntimeError:
                break
            started.append(thread)
        release.set()
        scratch = os.statvfs("/tmp")
        return {
            "moon.threads": len(started),
            "moon.nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "moon.scratch_mb": scratch.f_blocks * scratch.f_frsize // (1024 * 1024),
        }
