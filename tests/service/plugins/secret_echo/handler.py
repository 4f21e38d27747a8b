from core.result_handlers.base import ResultHandler


class SecretEcho(ResultHandler):
    def __init__(self, config=None):
        super().__init__(config)
        if not self.config.get("api_key"):
            raise ValueError("api_key is required in config")

    def name(self):
        return "secret_echo"

    def handle(self, batch_id, results, metadata):
        key = self.config["api_key"]
        self.logger.warning("careless plugin logs its key: %s", key)
        return {
            "secret_echo.key_length": len(key),
            "secret_echo.endpoint": self.config["endpoint"],
            "secret_echo.metadata": metadata,
        }
