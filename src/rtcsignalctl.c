/* rtcsignalctl: the operator's command line for a running rtcsignald. */
#include "ctl.h"
#include "i18n.h"

#include <glib.h>
#include <stdio.h>

int main(int argc, char *argv[])
{
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(GString) err = g_string_new(NULL);
	int status;

	i18n_init();
	g_set_prgname("rtcsignalctl");

	status = ctl_main(argc, argv, out, err);
	fputs(out->str, stdout);
	fputs(err->str, stderr);
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("rtcsignalctl: cannot write the output");
		return status ? status : 1;
	}
	return status;
}
