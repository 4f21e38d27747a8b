from core.result_handlers.base import ResultHandler


class Spin(ResultHandler):
    def handle(self, batch_id, results, metadata):
        n = 0
        while True:
            n += 1
