// rh-host WebAssembly SDK for AssemblyScript (WASI via @assemblyscript/wasi-shim).
//
// A handler is a WASI command: one JSON Invocation on stdin, exactly one JSON Reply on stdout,
// JSON-line log records on stderr (docs/wasm-abi.md). Set encoding = "json" in plugin.toml.
// Note: under wasi-shim console.error writes to stdout; log() uses process.stderr.

import { JsonKind, JsonObject, JsonValue, jsonString, parseJson } from "./json";

export { JsonKind, JsonObject, JsonValue, jsonString, parseJson };

/** One line of the batch output (OpenAI Batch or vLLM run_batch). */
export class Result {
  customId: string | null = null;
  hasResponse: bool = false;
  statusCode: i32 = -1;
  hasError: bool = false;
  raw: JsonValue = new JsonValue();

  /** A response with status 200 and no error. */
  succeeded(): bool { return this.hasResponse && this.statusCode == 200 && !this.hasError; }
}

/** What a handler receives: the batch, its metadata, and the handler's config. */
export class Invocation {
  batchId: string = "";
  handler: string = "";
  config: JsonValue = new JsonValue();
  metadata: JsonValue = new JsonValue();
  results: Result[] = [];
}

function readStdin(): Uint8Array {
  const chunks: ArrayBuffer[] = [];
  let total = 0;
  while (true) {
    const buf = new ArrayBuffer(65536);
    const n = process.stdin.read(buf);
    if (n <= 0) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    out.set(Uint8Array.wrap(chunks[i]), at);
    at += chunks[i].byteLength;
  }
  return out;
}

/** Read and decode the invocation from stdin; null when it is not a JSON invocation. */
export function readInvocation(): Invocation | null {
  const root = parseJson(readStdin());
  if (root == null || root.kind != JsonKind.Object) return null;
  const inv = new Invocation();
  const batchId = root.getString("batch_id");
  const handler = root.getString("handler");
  if (batchId == null || handler == null) return null;
  inv.batchId = batchId;
  inv.handler = handler;
  const config = root.get("config");
  if (config != null) inv.config = config;
  const metadata = root.get("metadata");
  if (metadata != null) inv.metadata = metadata;
  const results = root.get("results");
  if (results != null && results.kind == JsonKind.Array) {
    for (let i = 0; i < results.items.length; i++) {
      const line = results.items[i];
      const r = new Result();
      r.raw = line;
      r.customId = line.getString("custom_id");
      const resp = line.get("response");
      if (resp != null && resp.kind == JsonKind.Object) {
        r.hasResponse = true;
        r.statusCode = <i32>resp.getNumber("status_code", -1);
      }
      const err = line.get("error");
      r.hasError = err != null && err.truthy();
      inv.results.push(r);
    }
  }
  return inv;
}

/** Write the one reply on stdout. outputJson: a JSON object literal (see JsonObject). */
export function reply(ran: bool, ok: bool, outputJson: string = "{}", error: string | null = null): void {
  let out = "{\"protocol\":1,\"ran\":" + (ran ? "true" : "false") + ",\"ok\":" + (ok ? "true" : "false");
  out += ",\"output\":" + outputJson;
  if (error != null) out += ",\"error\":" + jsonString(error);
  process.stdout.write(out + "}");
}

/** Reply for stdin that is not an invocation: not ran, not ok (reported as protocol_error). */
export function replyDecodeError(): void {
  reply(false, false, "{}", "could not decode the invocation (is encoding = \"json\" set?)");
}

/** One structured log record on stderr as a JSON line. */
export function log(level: string, message: string): void {
  process.stderr.write("{\"level\":" + jsonString(level) + ",\"message\":" + jsonString(message) +
    ",\"logger\":\"assemblyscript\"}\n");
}
