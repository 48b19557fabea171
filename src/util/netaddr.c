#include "util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

bool netaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return sa->sa_family == AF_UNIX;
}

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void from_v4(const void *in_addr, struct netaddr *out)
{
	memcpy(out->b, v4mapped_prefix, sizeof v4mapped_prefix);
	memcpy(out->b + 12, in_addr, 4);
}

bool netaddr_is_v4(const struct netaddr *a)
{
	return memcmp(a->b, v4mapped_prefix, sizeof v4mapped_prefix) == 0;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	if (sa->sa_family == AF_INET) {
		from_v4(&((const struct sockaddr_in *)sa)->sin_addr, out);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof out->b);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* inet_pton wants a NUL: copy, bounded.  Its IPv4 form is strict (four
 * decimal parts, no leading zeros), which is what we want from text that
 * decides whom to trust. */
static int parse_family(int family, const char *text, size_t len, struct netaddr *out)
{
	char buf[NETADDR_STRLEN];
	uint8_t raw[16];

	if (len == 0 || len >= sizeof buf || memchr(text, '\0', len))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (inet_pton(family, buf, raw) != 1)
		return -EINVAL;
	if (family == AF_INET)
		from_v4(raw, out);
	else
		memcpy(out->b, raw, sizeof out->b);
	return 0;
}

int netaddr_parse(const char *text, size_t len, struct netaddr *out)
{
	if (memchr(text, ':', len))
		return parse_family(AF_INET6, text, len, out);
	return parse_family(AF_INET, text, len, out);
}

void netaddr_to_string(const struct netaddr *a, char out[NETADDR_STRLEN])
{
	if (netaddr_is_v4(a))
		inet_ntop(AF_INET, a->b + 12, out, NETADDR_STRLEN);
	else
		inet_ntop(AF_INET6, a->b, out, NETADDR_STRLEN);
}

struct cidr {
	struct netaddr net;
	unsigned prefix; /* bits of the 128-bit form: an IPv4 /N is 96 + N */
};

struct netaddr_cidrs {
	unsigned n;
	struct cidr items[];
};

static bool prefix_match(const struct netaddr *a, const struct netaddr *net, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (memcmp(a->b, net->b, bytes) != 0)
		return false;
	if (!bits)
		return true;
	uint8_t mask = (uint8_t)(0xff00 >> bits);
	return (a->b[bytes] & mask) == net->b[bytes];
}

static void apply_prefix(struct netaddr *a, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;

	if (bits)
		a->b[bytes++] &= (uint8_t)(0xff00 >> bits);
	memset(a->b + bytes, 0, sizeof a->b - bytes);
}

static int cidr_error(GError **err, const char *entry, const char *why)
{
	g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "\"%s\": %s", entry, why);
	return -EINVAL;
}

/* ENTRY is trimmed and not empty. */
static int parse_cidr(const char *entry, struct cidr *out, GError **err)
{
	const char *slash = strchr(entry, '/');
	size_t addr_len = slash ? (size_t)(slash - entry) : strlen(entry);
	bool v6 = memchr(entry, ':', addr_len) != NULL;
	unsigned max = v6 ? 128 : 32, prefix = max;

	if (netaddr_parse(entry, addr_len, &out->net) < 0)
		return cidr_error(err, entry, v6 ? "not a numeric IPv6 address" :
					"not a numeric IPv4 address (a.b.c.d)");
	if (slash) {
		const char *digits = slash + 1;
		size_t n = strlen(digits);
		if (n == 0 || n > 3 || strspn(digits, "0123456789") != n ||
		    (prefix = (unsigned)atoi(digits)) > max) {
			g_autofree char *why = g_strdup_printf("prefix length must be 0..%u", max);
			return cidr_error(err, entry, why);
		}
	}
	out->prefix = v6 ? prefix : 96 + prefix;
	struct netaddr masked = out->net;
	apply_prefix(&masked, out->prefix);
	if (memcmp(&masked, &out->net, sizeof masked) != 0) {
		char net[NETADDR_STRLEN];
		/* In the family the operator wrote. */
		inet_ntop(v6 ? AF_INET6 : AF_INET, v6 ? masked.b : masked.b + 12, net, sizeof net);
		/* Refused rather than masked: "10.1.2.3/8" is more likely a
		 * typo than a wish to trust all of 10/8. */
		g_autofree char *why = g_strdup_printf(
			"address has bits set beyond the /%u prefix (the network is %s/%u)", prefix,
			net, prefix);
		return cidr_error(err, entry, why);
	}
	return 0;
}

int netaddr_cidrs_parse(const char *text, struct netaddr_cidrs **out, GError **err)
{
	g_auto(GStrv) entries = g_strsplit_set(text, ";,", -1);
	g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(struct cidr));

	for (char **e = entries; *e; e++) {
		struct cidr c;
		g_strstrip(*e);
		if (!**e)
			continue;
		if (parse_cidr(*e, &c, err) < 0)
			return -EINVAL;
		g_array_append_val(items, c);
	}
	struct netaddr_cidrs *list = g_malloc(sizeof *list + items->len * sizeof(struct cidr));
	list->n = items->len;
	if (items->len)
		memcpy(list->items, items->data, items->len * sizeof(struct cidr));
	*out = list;
	return 0;
}

void netaddr_cidrs_free(struct netaddr_cidrs *list)
{
	g_free(list);
}

unsigned netaddr_cidrs_count(const struct netaddr_cidrs *list)
{
	return list ? list->n : 0;
}

bool netaddr_cidrs_contain(const struct netaddr_cidrs *list, const struct netaddr *a)
{
	/* A linear scan: trusted proxy lists are a handful of entries. */
	for (unsigned i = 0; list && i < list->n; i++)
		if (prefix_match(a, &list->items[i].net, list->items[i].prefix))
			return true;
	return false;
}

bool netaddr_in_cidrs(const struct netaddr_cidrs *list, const struct sockaddr *sa)
{
	struct netaddr a;
	return netaddr_from_sockaddr(sa, &a) == 0 && netaddr_cidrs_contain(list, &a);
}

/* Longest X-Forwarded-For entry looked at, blanks included: "[v6]:port"
 * is 53 bytes. */
#define XFF_ENTRY_MAX 128

static bool is_port(const char *s, size_t n)
{
	unsigned port = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		port = port * 10 + (unsigned)(s[i] - '0');
	}
	return port <= 65535;
}

static int parse_xff_entry(const char *s, size_t n, struct netaddr *out)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close)
			return -EINVAL;
		size_t inner = (size_t)(close - s - 1), rest = n - inner - 2;
		if (rest && (close[1] != ':' || !is_port(close + 2, rest - 1)))
			return -EINVAL;
		return parse_family(AF_INET6, s + 1, inner, out);
	}
	const char *colon = memchr(s, ':', n);
	if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
		/* One colon: IPv4 with a port (IPv6 has at least two). */
		if (!is_port(colon + 1, n - (size_t)(colon - s) - 1))
			return -EINVAL;
		return parse_family(AF_INET, s, (size_t)(colon - s), out);
	}
	return netaddr_parse(s, n, out);
}

int netaddr_client(const struct netaddr_cidrs *trusted, const struct sockaddr *peer,
		   const char *xff, size_t len, struct netaddr *out)
{
	int r = netaddr_from_sockaddr(peer, out);

	if (r < 0 || !xff || !netaddr_cidrs_contain(trusted, out))
		return r;
	/* Right to left: each hop was appended by the one after it, so only
	 * entries added by trusted proxies can be believed. */
	const char *end = xff + len;
	for (unsigned hop = 0; hop < NETADDR_XFF_MAX_HOPS; hop++) {
		const char *start = end;
		struct netaddr a;
		while (start > xff && start[-1] != ',') {
			if (end - --start > XFF_ENTRY_MAX)
				return 0;
		}
		if (parse_xff_entry(start, (size_t)(end - start), &a) < 0)
			return 0;
		*out = a;
		if (!netaddr_cidrs_contain(trusted, &a) || start == xff)
			return 0;
		end = start - 1;
	}
	return 0;
}

bool netaddr_is_loopback_addr(const struct netaddr *a)
{
	static const uint8_t v6_loopback[16] = { [15] = 1 };
	if (netaddr_is_v4(a))
		return a->b[12] == 127;
	return memcmp(a->b, v6_loopback, sizeof v6_loopback) == 0;
}
