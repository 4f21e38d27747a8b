from core.result_handlers.base import ResultHandler


class NeedsApiKey(ResultHandler):
    """The plugin guide's validation pattern."""

    def __init__(self, config=None):
        super().__init__(config)
        self.api_key = self.config.get("api_key")
        if not self.api_key:
            raise ValueError("api_key is required in config")

    def handle(self, batch_id, results, metadata):
        return True
