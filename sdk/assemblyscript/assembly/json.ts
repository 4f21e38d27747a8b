// A small JSON reader and writer for guests: enough for the rh-host protocol, no dependencies.

export enum JsonKind { Null, Bool, Number, String, Array, Object }

/** One parsed JSON value. Objects keep their keys in order. */
export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  b: bool = false;
  n: f64 = 0;
  s: string = "";
  items: JsonValue[] = [];
  keys: string[] = [];

  isNull(): bool { return this.kind == JsonKind.Null; }

  /** Python's truthiness: null, false, 0, "", [] and {} are false. */
  truthy(): bool {
    if (this.kind == JsonKind.Bool) return this.b;
    if (this.kind == JsonKind.Number) return this.n != 0;
    if (this.kind == JsonKind.String) return this.s.length > 0;
    if (this.kind == JsonKind.Array || this.kind == JsonKind.Object) return this.items.length > 0;
    return false;
  }

  /** The value of `key` in an object, or null when absent (or this is not an object). */
  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  getString(key: string): string | null {
    const v = this.get(key);
    return v != null && v.kind == JsonKind.String ? v.s : null;
  }

  getNumber(key: string, fallback: f64): f64 {
    const v = this.get(key);
    return v != null && v.kind == JsonKind.Number ? v.n : fallback;
  }

  getBool(key: string, fallback: bool): bool {
    const v = this.get(key);
    return v != null && v.kind == JsonKind.Bool ? v.b : fallback;
  }
}

/** Thrown (as abort) on malformed input; callers get null from parseJson instead. */
class Parser {
  pos: i32 = 0;
  ok: bool = true;
  constructor(public data: Uint8Array) {}

  ws(): void {
    while (this.pos < this.data.length) {
      const c = this.data[this.pos];
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.pos++;
    }
  }

  peek(): i32 { return this.pos < this.data.length ? <i32>this.data[this.pos] : -1; }

  fail(): JsonValue { this.ok = false; return new JsonValue(); }

  literal(word: string, value: JsonValue): JsonValue {
    for (let i = 0; i < word.length; i++) {
      if (this.peek() != word.charCodeAt(i)) return this.fail();
      this.pos++;
    }
    return value;
  }

  value(depth: i32): JsonValue {
    if (depth > 512) return this.fail();
    this.ws();
    const c = this.peek();
    const v = new JsonValue();
    if (c == 0x7b) { // {
      v.kind = JsonKind.Object;
      this.pos++;
      this.ws();
      if (this.peek() == 0x7d) { this.pos++; return v; }
      while (this.ok) {
        this.ws();
        if (this.peek() != 0x22) return this.fail();
        v.keys.push(this.string());
        this.ws();
        if (this.peek() != 0x3a) return this.fail();
        this.pos++;
        v.items.push(this.value(depth + 1));
        this.ws();
        const d = this.peek();
        this.pos++;
        if (d == 0x7d) return v;
        if (d != 0x2c) return this.fail();
      }
      return v;
    }
    if (c == 0x5b) { // [
      v.kind = JsonKind.Array;
      this.pos++;
      this.ws();
      if (this.peek() == 0x5d) { this.pos++; return v; }
      while (this.ok) {
        v.items.push(this.value(depth + 1));
        this.ws();
        const d = this.peek();
        this.pos++;
        if (d == 0x5d) return v;
        if (d != 0x2c) return this.fail();
      }
      return v;
    }
    if (c == 0x22) { v.kind = JsonKind.String; v.s = this.string(); return v; }
    if (c == 0x74) { v.kind = JsonKind.Bool; v.b = true; return this.literal("true", v); }
    if (c == 0x66) { v.kind = JsonKind.Bool; return this.literal("false", v); }
    if (c == 0x6e) { return this.literal("null", v); }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = this.pos;
      this.pos++;
      while (this.pos < this.data.length) {
        const d = this.data[this.pos];
        if (!((d >= 0x30 && d <= 0x39) || d == 0x2e || d == 0x65 || d == 0x45 || d == 0x2b || d == 0x2d)) break;
        this.pos++;
      }
      v.kind = JsonKind.Number;
      v.n = parseFloat(String.UTF8.decode(this.data.slice(start, this.pos).buffer));
      return v;
    }
    return this.fail();
  }

  string(): string {
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    while (this.pos < this.data.length) {
      const c = this.data[this.pos];
      if (c == 0x22) {
        out += String.UTF8.decode(this.data.slice(start, this.pos).buffer);
        this.pos++;
        return out;
      }
      if (c == 0x5c) {
        out += String.UTF8.decode(this.data.slice(start, this.pos).buffer);
        this.pos++;
        const e = this.peek();
        this.pos++;
        if (e == 0x6e) out += "\n";
        else if (e == 0x74) out += "\t";
        else if (e == 0x72) out += "\r";
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x75) {
          if (this.pos + 4 > this.data.length) { this.ok = false; return out; }
          const hex = String.UTF8.decode(this.data.slice(this.pos, this.pos + 4).buffer);
          out += String.fromCharCode(<i32>parseInt(hex, 16));
          this.pos += 4;
        } else out += String.fromCharCode(e);
        start = this.pos;
        continue;
      }
      this.pos++;
    }
    this.ok = false;
    return out;
  }
}

/** Parse UTF-8 JSON; null when malformed. */
export function parseJson(data: Uint8Array): JsonValue | null {
  const p = new Parser(data);
  const v = p.value(0);
  p.ws();
  if (!p.ok || p.pos != data.length) return null;
  return v;
}

/** `s` as a JSON string literal, quotes included. */
export function jsonString(s: string): string {
  let out = "\"";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + "\"";
}

/** Builds a JSON object literal: new JsonObject().int("total", 3).num("rate", 0.5).toString(). */
export class JsonObject {
  private parts: string[] = [];

  raw(key: string, json: string): JsonObject { this.parts.push(jsonString(key) + ":" + json); return this; }
  int(key: string, value: i64): JsonObject { return this.raw(key, value.toString()); }
  num(key: string, value: f64): JsonObject {
    return this.raw(key, isFinite(value) ? (value == Math.floor(value) && Math.abs(value) < 1e15 ? (<i64>value).toString() + ".0" : value.toString()) : "null");
  }
  str(key: string, value: string): JsonObject { return this.raw(key, jsonString(value)); }
  bool(key: string, value: bool): JsonObject { return this.raw(key, value ? "true" : "false"); }
  toString(): string { return "{" + this.parts.join(",") + "}"; }
}
