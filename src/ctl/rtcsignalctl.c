/* rtcsignalctl: the operator's command line for a running rtcsignald. */
#include "ctl/ctl.h"
#include "util/i18n.h"

#include <curl/curl.h>
#include <glib.h>
#include <stdio.h>

int main(int argc, char *argv[])
{
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(GString) err = g_string_new(NULL);
	int status;

	i18n_init();
	g_set_prgname("rtcsignalctl");

	/* Once per process: httpc's curl handles rely on it. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rtcsignalctl: cannot initialise libcurl\n", stderr);
		return 1;
	}
	status = ctl_main(argc, argv, out, err);
	curl_global_cleanup();
	fputs(out->str, stdout);
	fputs(err->str, stderr);
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("rtcsignalctl: cannot write the output");
		return status ? status : 1;
	}
	return status;
}
