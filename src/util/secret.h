/* secret: random identifiers and credentials (OpenSSL's CSPRNG), and the
 * hashes under which credentials are stored. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Random bytes behind generated ids (room ids, key ids) and behind
 * credentials (room tokens, API key secrets). */
#define SECRET_ID_BYTES 8     /* 64 bits: unguessable enough to name things */
#define SECRET_TOKEN_BYTES 16 /* 128 bits: anything that grants access */
/* Size of the hex text of N random bytes, with its NUL. */
#define SECRET_HEX_SIZE(n) (2 * (n) + 1)

#define SECRET_HASH_LEN 32 /* SHA-256 */

/* Writes 2*NBYTES lowercase hex digits and a NUL to OUT. */
int secret_random_hex(char *out, size_t nbytes);

/* SHA-256 of SECRET (a NUL-terminated string).  Credentials are random
 * and long, so a fast hash is enough: nothing to brute-force. */
int secret_hash(const char *secret, uint8_t out[SECRET_HASH_LEN]);
/* Compares two hashes in constant time. */
bool secret_hash_equal(const uint8_t a[SECRET_HASH_LEN], const uint8_t b[SECRET_HASH_LEN]);
