from core.result_handlers.base import ResultHandler


class ReturnsFalse(ResultHandler):
    def handle(self, batch_id, results, metadata):
        self.logger.warning("not happy")
        return False
