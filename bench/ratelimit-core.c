/* ratelimit-core: the CPU of one ratelimit_take, the check every message
 * a session sends goes through.  The [limits] defaults (50 a second,
 * burst 200, the abuse rule) and one message every 10 us of synthetic
 * time, so refills and refusals are both exercised. */
#include "util/ratelimit.h"

#include <glib.h>
#include <stdio.h>

#define EXIT_USAGE 64
#define T0 (INT64_C(1000) * 1000000) /* any monotonic time */

int main(int argc, char *argv[])
{
	int calls = 2000000;
	const GOptionEntry entries[] = {
		{ "calls", 'n', 0, G_OPTION_ARG_INT, &calls, "Calls to time (2000000)", "N" },
		{ NULL },
	};
	g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
	g_autoptr(GError) err = NULL;

	g_option_context_set_summary(ctx, "CPU of ratelimit_take, without transport.");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, &argc, &argv, &err) || calls < 1) {
		fprintf(stderr, "ratelimit-core: %s\n", err ? err->message : "bad count");
		return EXIT_USAGE;
	}

	struct ratelimit_policy p;
	struct ratelimit b;
	unsigned allowed = 0;

	if (ratelimit_policy_per_second(&p, 50, 200) < 0 ||
	    ratelimit_policy_set_abuse(&p, RATELIMIT_ABUSE_REFUSALS, RATELIMIT_ABUSE_REGAIN_PER_SECOND) < 0)
		g_error("default policy refused");
	ratelimit_init(&b, &p, T0);
	gint64 start = g_get_monotonic_time();
	for (int i = 0; i < calls; i++)
		allowed += ratelimit_take(&b, &p, T0 + (int64_t)i * 10) == RATELIMIT_ALLOW;
	gint64 took = g_get_monotonic_time() - start;
	/* The count printed keeps the loop from being optimised away. */
	printf("ratelimit_take: %.1f ns per call (%d calls, %u allowed)\n", (double)took * 1000 / calls,
	       calls, allowed);
	return 0;
}
