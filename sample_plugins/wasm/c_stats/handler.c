/* stats summary in C: the same output as sample_plugins/python/stats_summary. */
#include <stdio.h>

#include "rh_plugin.h"

int main(void) {
    rh_invocation inv;
    if (rh_read_invocation(&inv) != 0) return rh_reply_decode_error();
    if (!rh_config_bool(&inv, "enabled", 1)) return rh_reply(0, 1, NULL, NULL);

    int total = inv.nresults, succeeded = 0;
    for (int i = 0; i < total; i++) {
        const rh_result *r = &inv.results[i];
        if (r->has_response && r->status_code == 200 && !r->has_error) succeeded++;
    }
    int failed = total - succeeded;
    double error_rate = total ? (double)failed / total : 0.0;

    char output[160];
    snprintf(output, sizeof output, "{\"total\":%d,\"succeeded\":%d,\"failed\":%d,\"error_rate\":%.4f}",
             total, succeeded, failed, error_rate);
    char message[96];
    snprintf(message, sizeof message, "summarised %d results, %d failed", total, failed);
    rh_log("INFO", message);
    return rh_reply(1, 1, output, NULL);
}
