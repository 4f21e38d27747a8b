import os

from core.result_handlers.base import ResultHandler


class StderrFlood(ResultHandler):
    def handle(self, batch_id, results, metadata):
        chunk = b"e" * (1024 * 1024)
        for _ in range(500):
            os.write(2, chunk)
        return True
