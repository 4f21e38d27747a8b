import time

from core.result_handlers.base import ResultHandler


class SleepsWithoutReading(ResultHandler):
    def handle(self, batch_id, results, metadata):
        time.sleep(3600)
