// stats summary in AssemblyScript: the same output as sample_plugins/python/stats_summary.
import { JsonObject, log, readInvocation, reply, replyDecodeError } from "../../../sdk/assemblyscript/assembly/index";

function main(): void {
  const inv = readInvocation();
  if (inv == null) {
    replyDecodeError();
    return;
  }
  if (!inv.config.getBool("enabled", true)) {
    reply(false, true);
    return;
  }
  const total = inv.results.length;
  let succeeded = 0;
  for (let i = 0; i < total; i++) {
    if (inv.results[i].succeeded()) succeeded++;
  }
  const failed = total - succeeded;
  const rate: f64 = total == 0 ? 0.0 : Math.round(<f64>failed / <f64>total * 10000.0) / 10000.0;
  log("INFO", "summarised " + total.toString() + " results, " + failed.toString() + " failed");
  reply(true, true, new JsonObject().int("total", total).int("succeeded", succeeded).int("failed", failed)
    .num("error_rate", rate).toString());
}

main();
