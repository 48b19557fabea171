/* Shared by the libFuzzer harnesses of tests/fuzz/ and by their replay in
 * make check (tests/fuzz/replay.c).  A harness is written once:
 *
 *	FUZZ_TARGET(jscan) { ...data, size...; return 0; }
 *
 * Built by make fuzz (FUZZ_LIBFUZZER), that is LLVMFuzzerTestOneInput;
 * built by gcc into tests/test-fuzz-replay, it registers itself under its
 * name, and the replay feeds it every file of tests/fuzz/corpus/NAME/ and
 * tests/fuzz/regress/NAME/.  A finding is an abort(): a failed g_assert or
 * fuzz_fail(), or a sanitizer report. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

#ifdef FUZZ_LIBFUZZER
#define FUZZ_TARGET(name)                                                     \
	static int fuzz_##name(const uint8_t *data, size_t size);            \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);        \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)         \
	{                                                                     \
		return fuzz_##name(data, size);                              \
	}                                                                     \
	static int fuzz_##name(const uint8_t *data, size_t size)
#else
void fuzz_register(const char *name, fuzz_fn fn);
#define FUZZ_TARGET(name)                                                     \
	static int fuzz_##name(const uint8_t *data, size_t size);            \
	__attribute__((constructor)) static void fuzz_register_##name(void)  \
	{                                                                     \
		fuzz_register(#name, fuzz_##name);                           \
	}                                                                     \
	static int fuzz_##name(const uint8_t *data, size_t size)
#endif

/* Prints the finding and aborts (libFuzzer then saves the input). */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Inputs holding several records (messages, or a filter and metadata)
 * separate them with a line "%%": "\n%%\n" cannot occur in JSON text. */
#define FUZZ_SEP "\n%%\n"
struct fuzz_rec {
	const char *p;
	size_t len;
};
/* Splits DATA into at most MAX records (the last one takes the rest);
 * returns how many. */
size_t fuzz_split(const uint8_t *data, size_t size, struct fuzz_rec *out, size_t max);

/* Every text the server sends must be JSON that any client parses:
 * one object (RFC 8259), json-c strict agreeing, and no NaN/Infinity
 * (which json-c writes and browsers refuse).  Fails with WHAT. */
void fuzz_check_output(const char *what, const char *text, size_t len);

/* CPU time of this thread, in microseconds (the budget checks: time on a
 * shared machine is not this input's cost). */
int64_t fuzz_cpu_us(void);
/* The factor budgets are multiplied by: 1, 50 under valgrind, or
 * $FUZZ_BUDGET_SCALE. */
unsigned fuzz_budget_scale(void);

/* Quiets the daemon's logging (once). */
void fuzz_quiet(void);

/* UTF-8 as lws checks text frames, U+0000 included. */
bool fuzz_utf8(const char *s, size_t len);

/* NaN, Infinity or -Infinity anywhere in V; in JSON text
 * (an 'N' or 'I' outside strings). */
bool fuzz_text_nonfinite(const char *s, size_t len);
bool fuzz_has_nonfinite(json_object *v);

/* A daemon's worth of state for the harnesses that drive the router, made
 * once per process: two configurations (open mode; and auth mode with the
 * issuer "test", https://issuer.test, audience "rtc", whose key set holds
 * one EC key "k1"), and tokens signed with that key. */
struct config;
struct auth;
struct rooms;
struct fuzz_env {
	struct config *cfg_open, *cfg_auth;
	struct auth *auth_open, *auth;
	/* valid for an hour: sub "alice", sub "bob"; expired; unknown kid */
	char *jwt_alice, *jwt_bob, *jwt_expired, *jwt_unknown_kid;
};
const struct fuzz_env *fuzz_env(void);
/* Fresh persistent rooms (ST: their store, or NULL: memory only) holding: room "proom" (token
 * "roomtoken", max_peers 2, by jwt:test:alice), "openroom" (open to the
 * issuer, by jwt:test:carol), "oldroom" (expired); with ACTIVE_KEY, API
 * key "k1.s3cret" for proom, always revoked "k2.s3cret" and expired
 * "k3.s3cret". */
struct store;
struct rooms *fuzz_env_rooms(struct store *st, bool active_key);
/* TEXT (LEN bytes) with the placeholders @jwt@, @jwt2@, @jwtx@ and @jwtk@
 * replaced by jwt_alice, jwt_bob, jwt_expired, jwt_unknown_kid (g_free);
 * *OUT_LEN its length. */
char *fuzz_env_expand(const char *text, size_t len, size_t *out_len);

/* A scratch directory of this process, removed with its files at exit. */
char *fuzz_tmpdir(const char *name);

/* Bytes the process has allocated now (ASan's count under libFuzzer,
 * glibc's otherwise; 0 where neither knows, e.g. under valgrind). */
size_t fuzz_allocated_bytes(void);
