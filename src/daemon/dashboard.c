#include "daemon/dashboard.h"

#include <string.h>

#include "daemon/dashboard-assets.h"

static const struct {
	const char *suffix, *type;
} types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
};

const struct dashboard_asset *dashboard_find(const char *url, const char **type, bool *page)
{
	if (strcmp(url, "/") == 0)
		url = "/index.html";
	for (size_t i = 0; i < sizeof dashboard_assets / sizeof dashboard_assets[0]; i++) {
		const struct dashboard_asset *a = &dashboard_assets[i];
		if (strcmp(url, a->path) != 0)
			continue;
		*type = "application/octet-stream";
		for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
			size_t n = strlen(a->path), k = strlen(types[t].suffix);
			if (n > k && strcmp(a->path + n - k, types[t].suffix) == 0)
				*type = types[t].type;
		}
		*page = strcmp(a->path, "/index.html") == 0;
		return a;
	}
	return NULL;
}
