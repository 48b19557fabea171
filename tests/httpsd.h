/* A real HTTP(S) server on 127.0.0.1 for the tests: fetch-server.py with
 * a test CA and certificates made with the openssl command.  It serves
 * the files of WWW (written by the test, any time) on four ports. */
#pragma once

#include <glib.h>

struct httpsd {
	char *dir;     /* temporary, removed by httpsd_stop */
	char *www;     /* DIR/www: what the server serves */
	char *ca_file; /* the CA that signed "good" and "othername" */
	int port_good;      /* TLS, a certificate for 127.0.0.1 and localhost */
	int port_otherca;   /* TLS, signed by a CA nobody trusts */
	int port_othername; /* TLS, for other.example only */
	int port_plain;     /* no TLS */
	GPid pid;
	int stdin_fd; /* the server exits when it closes */
};

/* Fails the test when anything does not work. */
struct httpsd *httpsd_start(void);
void httpsd_stop(struct httpsd *h);
/* Replaces WWW/NAME with TEXT at once (a rename), so a fetch sees the old
 * or the new file, never a part. */
void httpsd_put(struct httpsd *h, const char *name, const void *data, gsize len);
