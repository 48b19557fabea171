/* dashboard: the admin port's web page (GET /), its script and style,
 * compiled into the daemon from data/dashboard/ (tools/embed-assets.sh).
 * Static files only: everything live comes from /api/dashboard and
 * /api/audit, under the admin token the page asks for. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct dashboard_asset {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
};

/* The asset served at URL ("/" is /index.html) with its content type in
 * *TYPE and in *PAGE whether it is the page (not cached: it is where a
 * new version starts), or NULL. */
const struct dashboard_asset *dashboard_find(const char *url, const char **type, bool *page);

/* Headers every answer of the admin port carries: no framing, no
 * sniffing, no referrer, and a policy that allows only the port's own
 * script, style and API (no inline script, nothing from elsewhere). */
#define DASHBOARD_CSP                                                                        \
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "      \
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
