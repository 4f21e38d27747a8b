from core.result_handlers.base import ResultHandler


class WellBehaved(ResultHandler):
    def name(self):
        return "well_behaved"

    def handle(self, batch_id, results, metadata):
        self.logger.info("counted", extra={"batch_id": batch_id, "count": len(results)})
        return {"well_behaved_count": len(results)}
