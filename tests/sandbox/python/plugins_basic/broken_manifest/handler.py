from core.result_handlers.base import ResultHandler


class Whatever(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return True
