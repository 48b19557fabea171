#include "httpsd.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs ARGV in DIR; fails the test unless it succeeds. */
static void run(const char *dir, const char *const *argv)
{
	g_autofree char *out = NULL, *err_text = NULL;
	g_autoptr(GError) err = NULL;
	int status;

	if (!g_spawn_sync(dir, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err_text,
			  &status, &err) ||
	    !g_spawn_check_wait_status(status, &err))
		g_error("%s %s: %s\n%s", argv[0], argv[1], err->message, err_text);
}

/* NAME.pem and NAME.key in DIR: a CA (ISSUER NULL) or a leaf that
 * ISSUER signs, with the extensions of SECTION in openssl.cnf. */
static void make_cert(const char *dir, const char *name, const char *issuer, const char *section)
{
	g_autofree char *pem = g_strconcat(name, ".pem", NULL);
	g_autofree char *key = g_strconcat(name, ".key", NULL);
	g_autofree char *subj = g_strconcat("/CN=", name, NULL);
	g_autofree char *ipem = issuer ? g_strconcat(issuer, ".pem", NULL) : NULL;
	g_autofree char *ikey = issuer ? g_strconcat(issuer, ".key", NULL) : NULL;
	const char *args[] = { "openssl", "req", "-x509", "-config", "openssl.cnf", "-extensions", section,
			       "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			       "-keyout", key, "-out", pem, "-days", "2", "-subj", subj,
			       issuer ? "-CA" : NULL, ipem, "-CAkey", ikey, NULL };
	run(dir, args);
}

static void make_certs(const char *dir)
{
	static const char cnf[] =
		"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = x\n"
		"[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign\n"
		"[leaf]\nbasicConstraints = CA:FALSE\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
		"[leaf_other]\nbasicConstraints = CA:FALSE\nsubjectAltName = DNS:other.example\n";
	g_autofree char *cnf_path = g_build_filename(dir, "openssl.cnf", NULL);

	g_assert_true(g_file_set_contents(cnf_path, cnf, -1, NULL));
	make_cert(dir, "ca1", NULL, "ca");
	make_cert(dir, "ca2", NULL, "ca");
	make_cert(dir, "good", "ca1", "leaf");
	make_cert(dir, "otherca", "ca2", "leaf");
	make_cert(dir, "othername", "ca1", "leaf_other");
}

struct httpsd *httpsd_start(void)
{
	struct httpsd *h = g_new0(struct httpsd, 1);
	g_autofree char *script = g_test_build_filename(G_TEST_DIST, "fetch-server.py", NULL);
	g_autoptr(GError) err = NULL;
	char line[256];
	int out_fd;

	h->dir = g_dir_make_tmp("httpsd-XXXXXX", &err);
	g_assert_no_error(err);
	make_certs(h->dir);
	h->ca_file = g_build_filename(h->dir, "ca1.pem", NULL);
	h->www = g_build_filename(h->dir, "www", NULL);
	g_assert_cmpint(g_mkdir(h->www, 0700), ==, 0);

	const char *argv[] = { "python3", script, h->dir, NULL };
	if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
				      NULL, NULL, &h->pid, &h->stdin_fd, &out_fd, NULL, &err))
		g_error("cannot start %s: %s", script, err->message);
	FILE *out = fdopen(out_fd, "r");
	if (!fgets(line, sizeof line, out) ||
	    sscanf(line, "good=%d otherca=%d othername=%d plain=%d", &h->port_good, &h->port_otherca,
		   &h->port_othername, &h->port_plain) != 4)
		g_error("fetch-server.py did not start");
	fclose(out);
	return h;
}

void httpsd_stop(struct httpsd *h)
{
	int status;

	if (!h)
		return;
	close(h->stdin_fd); /* the server exits on EOF */
	waitpid(h->pid, &status, 0);
	g_spawn_close_pid(h->pid);
	run(NULL, (const char *[]){ "rm", "-rf", h->dir, NULL });
	g_free(h->dir);
	g_free(h->www);
	g_free(h->ca_file);
	g_free(h);
}

void httpsd_put(struct httpsd *h, const char *name, const void *data, gsize len)
{
	g_autofree char *path = g_build_filename(h->www, name, NULL);
	g_autoptr(GError) err = NULL;

	/* g_file_set_contents writes a temporary file and renames it. */
	g_file_set_contents(path, data, (gssize)len, &err);
	g_assert_no_error(err);
}
