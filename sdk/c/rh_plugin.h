/*
 * rh_plugin.h: the rh-host WebAssembly SDK for C (header only).
 *
 * A handler is a WASI command module: it reads one JSON Invocation on stdin, writes exactly one JSON
 * Reply on stdout and JSON-line log records on stderr (docs/wasm-abi.md). This header does that
 * plumbing on top of Debian's header-only jsmn (libjsmn-dev), so a handler is a plain main():
 *
 *     #include "rh_plugin.h"
 *     int main(void) {
 *         rh_invocation inv;
 *         if (rh_read_invocation(&inv) != 0) return rh_reply_decode_error();
 *         rh_log("INFO", "handling");
 *         return rh_reply(1, 1, "{\"total\":1}", NULL);
 *     }
 *
 * Build: clang --target=wasm32-wasi -O2 -Wl,--strip-all -I sdk/c handler.c -o handler.wasm
 * Set the plugin's encoding = "json" in plugin.toml.
 */
#ifndef RH_PLUGIN_H
#define RH_PLUGIN_H

#define JSMN_STATIC
#include <jsmn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line of the batch output, as far as most handlers care. */
typedef struct {
    char *custom_id;  /* NULL when absent or null */
    int has_response; /* a response object is present */
    int status_code;  /* response.status_code, or -1 */
    int has_error;    /* error is present and truthy (not null, "", {}, [], false or 0) */
    int tok;          /* index of this result's object token in inv->toks (for rh_obj_get) */
} rh_result;

typedef struct {
    char *json;       /* the raw invocation, NUL-terminated */
    size_t len;
    jsmntok_t *toks;
    int ntoks;
    char *batch_id;
    char *handler;
    int config;       /* token index of the config object, or -1 */
    int metadata;     /* token index of the metadata object, or -1 */
    rh_result *results;
    int nresults;
} rh_invocation;

/* ---- JSON reading: token helpers over inv->json ---- */

/* Index of the token after the subtree rooted at token i. */
static inline int rh_tok_skip(const jsmntok_t *t, int i) {
    int pending = 1;
    while (pending > 0) {
        if (t[i].type == JSMN_OBJECT) pending += t[i].size * 2;
        else if (t[i].type == JSMN_ARRAY) pending += t[i].size;
        pending--;
        i++;
    }
    return i;
}

static inline int rh_tok_eq(const rh_invocation *inv, int i, const char *s) {
    const jsmntok_t *t = &inv->toks[i];
    size_t n = (size_t)(t->end - t->start);
    return t->type == JSMN_STRING && strlen(s) == n && strncmp(inv->json + t->start, s, n) == 0;
}

/* Value token of `key` in the object at token obj, or -1. */
static inline int rh_obj_get(const rh_invocation *inv, int obj, const char *key) {
    if (obj < 0 || inv->toks[obj].type != JSMN_OBJECT) return -1;
    int i = obj + 1;
    for (int k = 0; k < inv->toks[obj].size; k++) {
        if (rh_tok_eq(inv, i, key)) return i + 1;
        i = rh_tok_skip(inv->toks, i + 1);
    }
    return -1;
}

static inline int rh_tok_is_null(const rh_invocation *inv, int i) {
    return i < 0 || (inv->toks[i].type == JSMN_PRIMITIVE && inv->json[inv->toks[i].start] == 'n');
}

/* Python's truthiness of token i: absent, null, false, 0, "", {} and [] are false. */
static inline int rh_tok_truthy(const rh_invocation *inv, int i) {
    if (i < 0) return 0;
    const jsmntok_t *t = &inv->toks[i];
    const char *s = inv->json + t->start;
    switch (t->type) {
    case JSMN_OBJECT:
    case JSMN_ARRAY: return t->size > 0;
    case JSMN_STRING: return t->end > t->start;
    case JSMN_PRIMITIVE: return !(s[0] == 'n' || s[0] == 'f' || (s[0] == '0' && t->end - t->start == 1));
    default: return 0;
    }
}

/* 1 for the literal true, 0 for false, `dflt` for anything else or absent. */
static inline int rh_tok_bool(const rh_invocation *inv, int i, int dflt) {
    if (i < 0 || inv->toks[i].type != JSMN_PRIMITIVE) return dflt;
    char c = inv->json[inv->toks[i].start];
    return c == 't' ? 1 : c == 'f' ? 0 : dflt;
}

static inline double rh_tok_number(const rh_invocation *inv, int i, double dflt) {
    if (i < 0 || inv->toks[i].type != JSMN_PRIMITIVE) return dflt;
    char c = inv->json[inv->toks[i].start];
    if (c != '-' && (c < '0' || c > '9')) return dflt;
    return strtod(inv->json + inv->toks[i].start, NULL);
}

/* A newly allocated, unescaped copy of the string token i (\uXXXX kept as UTF-8), or NULL. */
static inline char *rh_tok_strdup(const rh_invocation *inv, int i) {
    if (i < 0 || inv->toks[i].type != JSMN_STRING) return NULL;
    const char *s = inv->json + inv->toks[i].start, *end = inv->json + inv->toks[i].end;
    char *out = malloc((size_t)(end - s) + 1), *o = out;
    if (!out) return NULL;
    while (s < end) {
        if (*s != '\\' || s + 1 >= end) { *o++ = *s++; continue; }
        s++;
        switch (*s) {
        case 'n': *o++ = '\n'; s++; break;
        case 't': *o++ = '\t'; s++; break;
        case 'r': *o++ = '\r'; s++; break;
        case 'b': *o++ = '\b'; s++; break;
        case 'f': *o++ = '\f'; s++; break;
        case 'u': {
            unsigned cp = 0;
            if (end - s < 5) { s = end; break; }
            for (int k = 1; k <= 4; k++) {
                char h = s[k];
                cp = cp * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
            }
            s += 5;
            if (cp >= 0xD800 && cp < 0xDC00 && end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                unsigned lo = 0;
                for (int k = 2; k <= 5; k++) {
                    char h = s[k];
                    lo = lo * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            }
            if (cp < 0x80) *o++ = (char)cp;
            else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
            else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | ((cp >> 6) & 63));
                *o++ = (char)(0x80 | (cp & 63));
            } else {
                *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | ((cp >> 12) & 63));
                *o++ = (char)(0x80 | ((cp >> 6) & 63)); *o++ = (char)(0x80 | (cp & 63));
            }
            break;
        }
        default: *o++ = *s++; break; /* \" \\ \/ */
        }
    }
    *o = '\0';
    return out;
}

/* ---- reading the invocation ---- */

static inline char *rh__read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

/* Read and decode the Invocation from stdin. 0 on success, -1 when stdin is not a JSON invocation. */
static inline int rh_read_invocation(rh_invocation *inv) {
    memset(inv, 0, sizeof *inv);
    inv->config = inv->metadata = -1;
    inv->json = rh__read_stdin(&inv->len);
    if (!inv->json) return -1;
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, inv->json, inv->len, NULL, 0);
    if (n <= 0) return -1;
    inv->toks = malloc(sizeof(jsmntok_t) * (size_t)n);
    if (!inv->toks) return -1;
    jsmn_init(&p);
    inv->ntoks = jsmn_parse(&p, inv->json, inv->len, inv->toks, (unsigned)n);
    if (inv->ntoks <= 0 || inv->toks[0].type != JSMN_OBJECT) return -1;
    inv->batch_id = rh_tok_strdup(inv, rh_obj_get(inv, 0, "batch_id"));
    inv->handler = rh_tok_strdup(inv, rh_obj_get(inv, 0, "handler"));
    inv->config = rh_obj_get(inv, 0, "config");
    inv->metadata = rh_obj_get(inv, 0, "metadata");
    int arr = rh_obj_get(inv, 0, "results");
    if (arr < 0 || inv->toks[arr].type != JSMN_ARRAY) return 0;
    inv->nresults = inv->toks[arr].size;
    inv->results = calloc((size_t)inv->nresults + 1, sizeof(rh_result));
    if (!inv->results) return -1;
    int i = arr + 1;
    for (int k = 0; k < inv->nresults; k++) {
        rh_result *r = &inv->results[k];
        r->tok = i;
        r->custom_id = rh_tok_strdup(inv, rh_obj_get(inv, i, "custom_id"));
        int resp = rh_obj_get(inv, i, "response");
        r->has_response = resp >= 0 && inv->toks[resp].type == JSMN_OBJECT;
        r->status_code = r->has_response ? (int)rh_tok_number(inv, rh_obj_get(inv, resp, "status_code"), -1) : -1;
        r->has_error = rh_tok_truthy(inv, rh_obj_get(inv, i, "error"));
        i = rh_tok_skip(inv->toks, i);
    }
    return 0;
}

/* config[key] as a boolean, `dflt` when absent (e.g. rh_config_bool(&inv, "enabled", 1)). */
static inline int rh_config_bool(const rh_invocation *inv, const char *key, int dflt) {
    return rh_tok_bool(inv, rh_obj_get(inv, inv->config, key), dflt);
}

static inline double rh_config_number(const rh_invocation *inv, const char *key, double dflt) {
    return rh_tok_number(inv, rh_obj_get(inv, inv->config, key), dflt);
}

/* ---- writing ---- */

/* Write s as a JSON string literal (quotes included). */
static inline void rh_write_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { fputc('\\', f); fputc(*p, f); }
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* One structured log record on stderr (a JSON line: level, message, logger). */
static inline void rh_log(const char *level, const char *message) {
    fputs("{\"level\":", stderr);
    rh_write_json_string(stderr, level);
    fputs(",\"message\":", stderr);
    rh_write_json_string(stderr, message);
    fputs(",\"logger\":\"c\"}\n", stderr);
    fflush(stderr);
}

/* Write the one Reply and return the exit status for main (always 0: the status is in the reply).
 * output_json: a JSON object literal, or NULL for {}; error: NULL or a message. */
static inline int rh_reply(int ran, int ok, const char *output_json, const char *error) {
    fprintf(stdout, "{\"protocol\":1,\"ran\":%s,\"ok\":%s,\"output\":%s", ran ? "true" : "false",
            ok ? "true" : "false", output_json ? output_json : "{}");
    if (error) {
        fputs(",\"error\":", stdout);
        rh_write_json_string(stdout, error);
    }
    fputs("}", stdout);
    fflush(stdout);
    return 0;
}

/* The reply for stdin that is not an invocation: not ran, not ok (the host reports protocol_error). */
static inline int rh_reply_decode_error(void) {
    return rh_reply(0, 0, NULL, "could not decode the invocation (is encoding = \"json\" set?)");
}

/* Network (plugins with allowed_hosts only; docs/wasm-abi.md, "Network"): one HTTP request through
 * rh-host's egress broker. request_json: {"method","url","headers","body"}. Returns a malloc'd JSON
 * answer, {"status","headers","body"} or {"error": "..."}, for the caller to free; NULL if out of memory.
 * A module that never calls rh_http imports nothing from "rh". */
__attribute__((import_module("rh"), import_name("http_request"))) int rh__http_request(const char *request, int len);
__attribute__((import_module("rh"), import_name("http_response"))) int rh__http_response(char *buf, int capacity);

static inline char *rh_http(const char *request_json) {
    int size = rh__http_request(request_json, (int)strlen(request_json));
    char *answer = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (answer) {
        int copied = rh__http_response(answer, size);
        answer[copied > 0 ? copied : 0] = '\0';
    }
    return answer;
}

#endif /* RH_PLUGIN_H */
