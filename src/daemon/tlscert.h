/* tlscert: the certificate and key the WebSocket port serves wss:// with
 * ([server] tls_certificate, tls_key), loaded with OpenSSL.  Loading is
 * separate from serving so that a reload checks the new files before the
 * running ones are given up; serving sets the vhost's SSL_CTX, which
 * OpenSSL copies into each new connection, so a connection keeps the
 * certificate it was opened with. */
#pragma once

#include <glib.h>
#include <openssl/ssl.h>
#include <stdint.h>

struct tlscert;

/* Reads a PEM chain (leaf first) and a PEM private key (unencrypted),
 * checks that they match; ERR says which file and why. */
int tlscert_load(const char *cert_path, const char *key_path, struct tlscert **out, GError **err);
void tlscert_free(struct tlscert *tc);
/* notAfter of the leaf, in seconds since the epoch. */
int64_t tlscert_not_after(const struct tlscert *tc);
/* The same as ISO 8601 UTC, for the log. */
const char *tlscert_expiry(const struct tlscert *tc);
/* The leaf's serial number in hex, for the log. */
const char *tlscert_serial(const struct tlscert *tc);

/* The policy of every server SSL_CTX: TLS 1.2 and 1.3 only, no
 * compression, no renegotiation, handshakes counted. */
void tlscert_harden(SSL_CTX *ctx);
/* Serves TC on CTX's handshakes from now on. */
int tlscert_apply(const struct tlscert *tc, SSL_CTX *ctx, GError **err);

struct config;
/* tlscert_load() of CFG's tls_certificate and tls_key; *OUT NULL and 0
 * when CFG serves plain ws://. */
int tlscert_load_config(const struct config *cfg, struct tlscert **out, GError **err);
