import os

from core.result_handlers.base import ResultHandler


class ExitThree(ResultHandler):
    def handle(self, batch_id, results, metadata):
        os._exit(3)
