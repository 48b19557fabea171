#include "daemon/tlscert.h"

#include "util/log.h"
#include "util/config.h"
#include "util/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct tlscert {
	X509 *leaf;
	STACK_OF(X509) *chain; /* the intermediates after the leaf */
	EVP_PKEY *key;
	int64_t not_after;
	char *expiry; /* not_after as ISO 8601, for the log */
	char *serial;
};

/* OpenSSL's reason for the last failure, for a message. */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	return r ? r : "unknown error";
}

/* An encrypted key would make OpenSSL prompt on the terminal: refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* Sets ERR to what FMT says, then OpenSSL's reason. */
G_GNUC_PRINTF(3, 4)
static int fail(GError **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	g_autofree char *what = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: %s", what, ssl_reason());
	ERR_clear_error();
	return code;
}

int tlscert_load(const char *cert_path, const char *key_path, struct tlscert **out, GError **err)
{
	struct tlscert *tc = g_new0(struct tlscert, 1);
	BIO *bio = NULL;
	X509 *x;
	int r;

	ERR_clear_error();
	if (!(bio = BIO_new_file(cert_path, "r"))) {
		r = fail(err, -ENOENT, "[server] tls_certificate: cannot open %s", cert_path);
		goto out;
	}
	if (!(tc->leaf = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
		r = fail(err, -EINVAL, "[server] tls_certificate: %s holds no PEM certificate", cert_path);
		goto out;
	}
	tc->chain = sk_X509_new_null();
	while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)))
		sk_X509_push(tc->chain, x);
	/* The loop ends at the end of the file: not an error. */
	ERR_clear_error();
	BIO_free(bio);
	if (!(bio = BIO_new_file(key_path, "r"))) {
		r = fail(err, -ENOENT, "[server] tls_key: cannot open %s", key_path);
		goto out;
	}
	if (!(tc->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
		r = fail(err, -EINVAL, "[server] tls_key: %s holds no unencrypted PEM private key", key_path);
		goto out;
	}
	if (X509_check_private_key(tc->leaf, tc->key) != 1) {
		r = fail(err, -EINVAL, "[server] tls_key: %s does not match the certificate's public key",
			 key_path);
		goto out;
	}
	ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
	int days = 0, secs = 0;
	if (epoch && ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(tc->leaf)))
		tc->not_after = (int64_t)days * 86400 + secs;
	ASN1_TIME_free(epoch);
	GDateTime *dt = g_date_time_new_from_unix_utc(tc->not_after);
	tc->expiry = dt ? g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("?");
	if (dt)
		g_date_time_unref(dt);
	if (tc->not_after < g_get_real_time() / G_USEC_PER_SEC)
		log_warning("[server] tls_certificate: %s has expired: clients will refuse it", cert_path);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(tc->leaf), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	tc->serial = g_strdup(hex ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
	*out = g_steal_pointer(&tc);
	r = 0;
out:
	BIO_free(bio);
	tlscert_free(tc);
	return r;
}

void tlscert_free(struct tlscert *tc)
{
	if (!tc)
		return;
	X509_free(tc->leaf);
	sk_X509_pop_free(tc->chain, X509_free);
	EVP_PKEY_free(tc->key);
	g_free(tc->serial);
	g_free(tc->expiry);
	g_free(tc);
}

int64_t tlscert_not_after(const struct tlscert *tc)
{
	return tc->not_after;
}

const char *tlscert_expiry(const struct tlscert *tc)
{
	return tc->expiry;
}

const char *tlscert_serial(const struct tlscert *tc)
{
	return tc->serial;
}

/* Handshakes by result.  lws clears OpenSSL's error queue before each
 * SSL_accept, so one that ends with an error queued has failed (waiting
 * for the client queues none); a plain HTTP request to the port is one. */
static void on_info(const SSL *ssl, int where, int ret)
{
	(void)ssl;
	static struct log_rate failed_log;
	unsigned skipped;

	if (where & SSL_CB_HANDSHAKE_DONE) {
		metrics_inc(tls_handshakes[1]);
		return;
	}
	if ((where & SSL_CB_ACCEPT_EXIT) != SSL_CB_ACCEPT_EXIT || ret > 0 || !ERR_peek_error())
		return;
	metrics_inc(tls_handshakes[0]);
	if (log_rate_due(&failed_log, (uint64_t)(g_get_monotonic_time() / 1000), &skipped))
		log_notice("TLS handshake failed: %s (%u more failed since the last such line)",
			   ssl_reason(), skipped);
}

void tlscert_harden(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_info_callback(ctx, on_info);
}

int tlscert_apply(const struct tlscert *tc, SSL_CTX *ctx, GError **err)
{
	ERR_clear_error();
	/* Replaces the leaf, its chain and key at once; connections already
	 * open hold their own copy. */
	if (SSL_CTX_use_cert_and_key(ctx, tc->leaf, tc->key, tc->chain, 1) != 1)
		return fail(err, -EINVAL, "[server] tls_certificate: %s: cannot serve it", tc->serial);
	metrics_set(tls_certificate_expiry, tc->not_after);
	return 0;
}

int tlscert_load_config(const struct config *cfg, struct tlscert **out, GError **err)
{
	*out = NULL;
	if (!cfg->tls_certificate)
		return 0;
	return tlscert_load(cfg->tls_certificate, cfg->tls_key, out, err);
}
