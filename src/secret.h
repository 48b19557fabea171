/* secret: random identifiers and credentials (OpenSSL's CSPRNG). */
#pragma once

#include <stddef.h>

/* Writes 2*NBYTES lowercase hex digits and a NUL to OUT. */
int secret_random_hex(char *out, size_t nbytes);
