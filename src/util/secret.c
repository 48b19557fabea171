#include "util/secret.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

int secret_random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[64];

	if (nbytes > sizeof buf)
		return -EINVAL;
	if (RAND_bytes(buf, (int)nbytes) != 1)
		return -EIO;
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[buf[i] >> 4];
		out[2 * i + 1] = hex[buf[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

int secret_hash(const char *secret, uint8_t out[SECRET_HASH_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(secret, strlen(secret), out, &len, EVP_sha256(), NULL) != 1 ||
	    len != SECRET_HASH_LEN)
		return -EIO;
	return 0;
}

bool secret_hash_equal(const uint8_t a[SECRET_HASH_LEN], const uint8_t b[SECRET_HASH_LEN])
{
	return CRYPTO_memcmp(a, b, SECRET_HASH_LEN) == 0;
}
