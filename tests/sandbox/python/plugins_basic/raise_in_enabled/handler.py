from core.result_handlers.base import ResultHandler


class RaiseInEnabled(ResultHandler):
    def enabled(self, metadata=None):
        raise KeyError("feature_flag")

    def handle(self, batch_id, results, metadata):
        return True
