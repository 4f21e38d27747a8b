//! rh_plugin.zig: the rh-host WebAssembly SDK for Zig (std.json only).
//!
//! A handler is a WASI command: one JSON Invocation on stdin, exactly one JSON Reply on stdout,
//! JSON-line log records on stderr (docs/wasm-abi.md). Set encoding = "json" in plugin.toml.
//!
//!     const rh = @import("rh_plugin");
//!     pub fn main() !void {
//!         var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
//!         const inv = try rh.readInvocation(arena.allocator());
//!         try rh.log(arena.allocator(), "INFO", "handling");
//!         try rh.reply(arena.allocator(), .{ .ran = true, .ok = true, .output = .{ .total = inv.results.len } });
//!     }
//!
//! Build: python -m ziglang build-exe -target wasm32-wasi -O ReleaseSmall -fstrip
//!        --dep rh_plugin -Mroot=handler.zig -Mrh_plugin=sdk/zig/rh_plugin.zig

const std = @import("std");

/// The `response` object of a batch output line.
pub const Response = struct {
    status_code: i64 = 0,
    request_id: ?[]const u8 = null,
    body: ?std.json.Value = null,
};

/// One line of the batch output (OpenAI Batch or vLLM run_batch).
pub const Result = struct {
    custom_id: ?[]const u8 = null,
    id: ?[]const u8 = null,
    response: ?Response = null,
    /// OpenAI: {"code", "message"}; vLLM: a string or {"error": {...}}; null when the line succeeded.
    @"error": ?std.json.Value = null,

    /// A response with status 200 and no error (null, "", {} and the like count as no error).
    pub fn succeeded(self: Result) bool {
        const resp = self.response orelse return false;
        const no_error = if (self.@"error") |err| !truthy(err) else true;
        return resp.status_code == 200 and no_error;
    }
};

/// Python's truthiness of a JSON value: null, false, 0, "", [] and {} are false.
pub fn truthy(value: std.json.Value) bool {
    return switch (value) {
        .null => false,
        .bool => |b| b,
        .integer => |n| n != 0,
        .float => |f| f != 0,
        .number_string => |s| s.len > 0,
        .string => |s| s.len > 0,
        .array => |a| a.items.len > 0,
        .object => |o| o.count() > 0,
    };
}

/// What a handler receives: the batch, its metadata, and the handler's config.
pub const Invocation = struct {
    protocol: i64 = 1,
    batch_id: []const u8,
    handler: []const u8,
    config: std.json.Value = .null,
    metadata: std.json.Value = .null,
    results: []const Result = &.{},

    /// config[key] as a bool, `default` when absent or not a bool.
    pub fn configBool(self: Invocation, key: []const u8, default: bool) bool {
        if (self.config != .object) return default;
        const value = self.config.object.get(key) orelse return default;
        return if (value == .bool) value.bool else default;
    }
};

/// The one answer. `ran = false` means the handler skipped itself.
pub fn Reply(comptime Output: type) type {
    return struct {
        protocol: i64 = 1,
        ran: bool,
        ok: bool,
        output: Output,
        @"error": ?[]const u8 = null,
    };
}

pub const max_invocation_bytes = 256 * 1024 * 1024;

/// Read and decode the invocation from stdin; memory comes from `allocator` (an arena fits).
pub fn readInvocation(allocator: std.mem.Allocator) !Invocation {
    const data = try std.fs.File.stdin().readToEndAlloc(allocator, max_invocation_bytes);
    return std.json.parseFromSliceLeaky(Invocation, allocator, data, .{
        .ignore_unknown_fields = true,
        .allocate = .alloc_always,
    });
}

/// Write the reply on stdout. `value` is a struct literal with ran, ok, output (and optionally error).
pub fn reply(allocator: std.mem.Allocator, value: anytype) !void {
    const bytes = try std.json.Stringify.valueAlloc(allocator, value, .{ .emit_null_optional_fields = false });
    try std.fs.File.stdout().writeAll(bytes);
}

/// Reply with `ran = false` (skipped).
pub fn skip(allocator: std.mem.Allocator) !void {
    try reply(allocator, Reply(struct {}){ .ran = false, .ok = true, .output = .{} });
}

/// One structured log record on stderr as a JSON line.
pub fn log(allocator: std.mem.Allocator, level: []const u8, message: []const u8) !void {
    const record = .{ .level = level, .message = message, .logger = "zig" };
    const bytes = try std.json.Stringify.valueAlloc(allocator, record, .{});
    const stderr = std.fs.File.stderr();
    try stderr.writeAll(bytes);
    try stderr.writeAll("\n");
}
