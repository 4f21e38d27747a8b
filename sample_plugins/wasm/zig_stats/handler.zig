//! stats summary in Zig: the same output as sample_plugins/python/stats_summary.
const std = @import("std");
const rh = @import("rh_plugin");

const Stats = struct { total: usize, succeeded: usize, failed: usize, error_rate: f64 };

pub fn main() !void {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const a = arena.allocator();

    const inv = rh.readInvocation(a) catch {
        return rh.reply(a, rh.Reply(struct {}){ .ran = false, .ok = false, .output = .{}, .@"error" = "could not decode the invocation" });
    };
    if (!inv.configBool("enabled", true)) return rh.skip(a);

    var succeeded: usize = 0;
    for (inv.results) |result| {
        if (result.succeeded()) succeeded += 1;
    }
    const total = inv.results.len;
    const failed = total - succeeded;
    const rate: f64 = if (total == 0) 0.0 else @as(f64, @floatFromInt(failed)) / @as(f64, @floatFromInt(total));
    const rounded = @round(rate * 10000.0) / 10000.0;

    try rh.log(a, "INFO", try std.fmt.allocPrint(a, "summarised {d} results, {d} failed", .{ total, failed }));
    const stats = Stats{ .total = total, .succeeded = succeeded, .failed = failed, .error_rate = rounded };
    try rh.reply(a, rh.Reply(Stats){ .ran = true, .ok = true, .output = stats });
}
