from core.result_handlers.base import ResultHandler


class RaiseInHandle(ResultHandler):
    def handle(self, batch_id, results, metadata):
        raise RuntimeError("handle exploded")

    def on_error(self, error):
        self.logger.error(f"on_error saw: {error}", extra={"handler": self.name()})
