import time

from core.result_handlers.base import ResultHandler


class SlowStep(ResultHandler):
    def name(self):
        return "slow_step"

    def handle(self, batch_id, results, metadata):
        time.sleep(float(self.config.get("sleep_seconds", 0)))
        return {"slow_step.done": True, "slow_step.count": len(results)}
