/* Unit tests: addresses, CIDR lists, X-Forwarded-For, and per-address
 * accounting (connections and registrations). */
#include "util/addrlimit.h"
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#define SEC INT64_C(1000000)
#define T0 (1000 * SEC)

static struct netaddr addr(const char *text)
{
	struct netaddr a;
	g_assert_cmpint(netaddr_parse(text, strlen(text), &a), ==, 0);
	return a;
}

/* A socket address for TEXT (IPv4 or IPv6), as getpeername() gives it. */
static struct sockaddr *sock(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		g_assert_cmpint(inet_pton(AF_INET6, text, &s6->sin6_addr), ==, 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		g_assert_cmpint(inet_pton(AF_INET, text, &s4->sin_addr), ==, 1);
	}
	return (struct sockaddr *)ss;
}

static void assert_text(const struct netaddr *a, const char *want)
{
	char buf[NETADDR_STRLEN];
	netaddr_to_string(a, buf);
	g_assert_cmpstr(buf, ==, want);
}

static void test_parse(void)
{
	struct netaddr a, b;
	struct sockaddr_storage ss;

	a = addr("192.0.2.7");
	g_assert_true(netaddr_is_v4(&a));
	assert_text(&a, "192.0.2.7");
	/* Mapped IPv6 is the same address as the IPv4 one. */
	b = addr("::ffff:192.0.2.7");
	g_assert_cmpmem(&a, sizeof a, &b, sizeof b);
	assert_text(&b, "192.0.2.7");
	a = addr("2001:DB8:0:0:0:0:0:1");
	g_assert_false(netaddr_is_v4(&a));
	assert_text(&a, "2001:db8::1");

	g_assert_cmpint(netaddr_from_sockaddr(sock("192.0.2.7", &ss), &a), ==, 0);
	assert_text(&a, "192.0.2.7");
	g_assert_cmpint(netaddr_from_sockaddr(sock("::ffff:192.0.2.7", &ss), &b), ==, 0);
	g_assert_cmpmem(&a, sizeof a, &b, sizeof b);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	g_assert_cmpint(netaddr_from_sockaddr((struct sockaddr *)&un, &a), ==, -EAFNOSUPPORT);

	const char *bad[] = { "", "10.1", "010.0.0.1", "1.2.3.4.5", "256.0.0.1", "1.2.3.4:80",
			      "[::1]", "fe80::1%eth0", "::g", " 1.2.3.4", "localhost",
			      "1111:2222:3333:4444:5555:6666:7777:8888:9999" };
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		g_assert_cmpint(netaddr_parse(bad[i], strlen(bad[i]), &a), ==, -EINVAL);
	/* Length, not NUL, ends the text; an embedded NUL is refused. */
	g_assert_cmpint(netaddr_parse("10.0.0.1junk", 8, &a), ==, 0);
	assert_text(&a, "10.0.0.1");
	g_assert_cmpint(netaddr_parse("10.0.0.1\0", 9, &a), ==, -EINVAL);
}

static struct netaddr_cidrs *cidrs(const char *text)
{
	struct netaddr_cidrs *list = NULL;
	g_autoptr(GError) err = NULL;
	g_assert_cmpint(netaddr_cidrs_parse(text, &list, &err), ==, 0);
	g_assert_no_error(err);
	return list;
}

static bool in(const struct netaddr_cidrs *list, const char *text)
{
	struct sockaddr_storage ss;
	return netaddr_in_cidrs(list, sock(text, &ss));
}

static void test_cidrs_good(void)
{
	struct netaddr_cidrs *l = cidrs("10.0.0.0/8;192.168.1.7;::1/128;fd00::/8");

	g_assert_cmpuint(netaddr_cidrs_count(l), ==, 4);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	g_assert_false(netaddr_in_cidrs(l, (struct sockaddr *)&un));
	netaddr_cidrs_free(l);

	static const struct {
		const char *list;
		const char *in[8], *out[8];
	} cases[] = {
		{ "10.0.0.0/8;192.168.1.7;::1/128;fd00::/8",
		  { "10.0.0.0", "10.255.255.255", "192.168.1.7", "::1", "fd12:3456::1",
		    /* An IPv4 client on a dual-stack socket arrives mapped. */
		    "::ffff:10.1.2.3" },
		  { "11.0.0.0", "9.255.255.255", "192.168.1.8", "::2", "fe00::1", "::ffff:11.1.2.3",
		    /* ...but 10/8 is no IPv6 network but the mapped one. */
		    "::10.1.2.3" } },
		/* Blanks, ',' as separator, empty entries, odd prefix lengths. */
		{ " 172.16.0.0/12 ,, 2001:db8:80::/41 ; ", { "172.31.255.255", "2001:db8:ff::1" },
		  { "172.32.0.0", "2001:db8:7f::1" } },
		/* 0.0.0.0/0 is every IPv4 address and nothing else. */
		{ "0.0.0.0/0", { "203.0.113.9", "::ffff:203.0.113.9" }, { "2001:db8::1" } },
		{ "::/0", { "203.0.113.9", "2001:db8::1" }, { NULL } },
		/* A mapped network written in IPv6 is an IPv4 network. */
		{ "::ffff:10.0.0.0/104", { "10.9.8.7" }, { "11.9.8.7", "::a09:807" } },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		l = cidrs(cases[i].list);
		for (const char *const *a = cases[i].in; a < cases[i].in + 8 && *a; a++)
			g_assert_true(in(l, *a));
		for (const char *const *a = cases[i].out; a < cases[i].out + 8 && *a; a++)
			g_assert_false(in(l, *a));
		netaddr_cidrs_free(l);
	}

	/* Empty: valid, matches nothing; so does no list at all. */
	l = cidrs("");
	g_assert_cmpuint(netaddr_cidrs_count(l), ==, 0);
	g_assert_false(in(l, "127.0.0.1"));
	netaddr_cidrs_free(l);
	g_assert_false(in(NULL, "127.0.0.1"));
	g_assert_cmpuint(netaddr_cidrs_count(NULL), ==, 0);
}

static void assert_bad_cidrs(const char *text, const char *quoted, const char *why)
{
	struct netaddr_cidrs *list = NULL;
	g_autoptr(GError) err = NULL;

	g_assert_cmpint(netaddr_cidrs_parse(text, &list, &err), ==, -EINVAL);
	g_assert_null(list);
	g_assert_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
	g_autofree char *q = g_strdup_printf("\"%s\"", quoted);
	g_assert_nonnull(strstr(err->message, q));
	g_assert_nonnull(strstr(err->message, why));
}

static void test_cidrs_bad(void)
{
	assert_bad_cidrs("10.0.0.0/33", "10.0.0.0/33", "prefix length must be 0..32");
	assert_bad_cidrs("::/129", "::/129", "prefix length must be 0..128");
	assert_bad_cidrs("10.0.0.0/", "10.0.0.0/", "prefix length");
	assert_bad_cidrs("10.0.0.0/-1", "10.0.0.0/-1", "prefix length");
	assert_bad_cidrs("10.0.0.0/8x", "10.0.0.0/8x", "prefix length");
	assert_bad_cidrs("10.0.0.0/0008", "10.0.0.0/0008", "prefix length");
	assert_bad_cidrs("10.1.2.3/8", "10.1.2.3/8", "the network is 10.0.0.0/8");
	assert_bad_cidrs("fd00::1/8", "fd00::1/8", "the network is fd00::/8");
	assert_bad_cidrs("10.0.0", "10.0.0", "not a numeric IPv4 address");
	assert_bad_cidrs("proxy.example.org", "proxy.example.org", "not a numeric IPv4");
	assert_bad_cidrs("fe80::1%eth0/64", "fe80::1%eth0/64", "not a numeric IPv6 address");
	assert_bad_cidrs("10.0.0.0/8 ; bogus ; ::1", "bogus", "not a numeric");
	assert_bad_cidrs("10.0.0.0 8", "10.0.0.0 8", "not a numeric");
}

struct xff_case {
	const char *peer;
	const char *xff; /* NULL: no header */
	const char *want;
};

static void check_xff(const struct netaddr_cidrs *trusted, const struct xff_case *c)
{
	struct sockaddr_storage ss;
	struct netaddr out;
	char buf[NETADDR_STRLEN];

	g_assert_cmpint(netaddr_client(trusted, sock(c->peer, &ss), c->xff,
				       c->xff ? strlen(c->xff) : 0, &out), ==, 0);
	netaddr_to_string(&out, buf);
	if (g_strcmp0(buf, c->want) != 0)
		g_error("peer %s, X-Forwarded-For \"%s\": got %s, want %s", c->peer,
			c->xff ? c->xff : "(none)", buf, c->want);
}

static void test_xff(void)
{
	struct netaddr_cidrs *t = cidrs("10.0.0.0/8;192.168.0.0/16;2001:db8:ffff::/48");
	static const struct xff_case cases[] = {
		/* No header: the peer. */
		{ "10.0.0.1", NULL, "10.0.0.1" },
		{ "203.0.113.5", NULL, "203.0.113.5" },
		/* An untrusted peer's header is not read at all. */
		{ "203.0.113.5", "198.51.100.7", "203.0.113.5" },
		{ "203.0.113.5", "10.0.0.9, 198.51.100.7", "203.0.113.5" },
		/* One proxy. */
		{ "10.0.0.1", "198.51.100.7", "198.51.100.7" },
		{ "10.0.0.1", "  198.51.100.7\t", "198.51.100.7" },
		{ "10.0.0.1", "198.51.100.7:5555", "198.51.100.7" },
		{ "10.0.0.1", "2001:db8::7", "2001:db8::7" },
		{ "10.0.0.1", "[2001:db8::7]", "2001:db8::7" },
		{ "10.0.0.1", "[2001:db8::7]:443", "2001:db8::7" },
		{ "10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7" },
		{ "::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7" }, /* mapped peer */
		{ "2001:db8:ffff::2", "198.51.100.7", "198.51.100.7" },
		/* Chains: the first untrusted from the right; what the client
		 * itself wrote (6.6.6.6) is ignored. */
		{ "10.0.0.1", "6.6.6.6, 198.51.100.7, 192.168.1.1", "198.51.100.7" },
		{ "10.0.0.1", "6.6.6.6,198.51.100.7,192.168.1.1,10.2.2.2", "198.51.100.7" },
		{ "10.0.0.1", "198.51.100.7, 203.0.113.9", "203.0.113.9" },
		/* All trusted: the leftmost, the last trusted hop. */
		{ "10.0.0.1", "10.1.1.1, 192.168.2.2", "10.1.1.1" },
		/* Garbage stops the walk at the last trusted hop. */
		{ "10.0.0.1", "198.51.100.7, garbage", "10.0.0.1" },
		{ "10.0.0.1", "198.51.100.7, 192.168.1.1, unknown", "10.0.0.1" },
		{ "10.0.0.1", "unknown, 192.168.1.1", "192.168.1.1" },
		{ "10.0.0.1", "garbage, 198.51.100.7", "198.51.100.7" },
		{ "10.0.0.1", "198.51.100.7,", "10.0.0.1" },
		{ "10.0.0.1", ",192.168.1.1", "192.168.1.1" },
		{ "10.0.0.1", "", "10.0.0.1" },
		{ "10.0.0.1", "   ", "10.0.0.1" },
		{ "10.0.0.1", "198.51.100.7:99999", "10.0.0.1" },
		{ "10.0.0.1", "198.51.100.7:", "10.0.0.1" },
		{ "10.0.0.1", "[2001:db8::7", "10.0.0.1" },
		{ "10.0.0.1", "[2001:db8::7]x", "10.0.0.1" },
		{ "10.0.0.1", "[198.51.100.7]", "10.0.0.1" },
		{ "10.0.0.1", "198.51.100.7 203.0.113.9", "10.0.0.1" },
		{ "10.0.0.1", "fe80::1%eth0", "10.0.0.1" },
		{ "10.0.0.1", "\"198.51.100.7\"", "10.0.0.1" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
		check_xff(t, &cases[i]);

	/* An empty trusted list believes no header. */
	struct xff_case c = { "10.0.0.1", "198.51.100.7", "10.0.0.1" };
	check_xff(NULL, &c);

	/* A NUL inside the value is garbage, not an end. */
	struct sockaddr_storage ss;
	struct netaddr out;
	g_assert_cmpint(netaddr_client(t, sock("10.0.0.1", &ss), "1.2.3.4\0", 8, &out), ==, 0);
	assert_text(&out, "10.0.0.1");

	struct sockaddr_un un = { .sun_family = AF_UNIX };
	g_assert_cmpint(netaddr_client(t, (struct sockaddr *)&un, "1.2.3.4", 7, &out), ==,
			-EAFNOSUPPORT);
	netaddr_cidrs_free(t);
}

static void test_xff_long(void)
{
	struct netaddr_cidrs *t = cidrs("10.0.0.0/8");
	struct sockaddr_storage ss;
	struct netaddr out;
	GString *h = g_string_new("198.51.100.7");

	/* 200,000 trusted hops: only NETADDR_XFF_MAX_HOPS are looked at, and
	 * the answer is the last trusted one reached. */
	for (unsigned i = 0; i < 200000; i++)
		g_string_append_printf(h, ", 10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
	gint64 start = g_get_monotonic_time();
	g_assert_cmpint(netaddr_client(t, sock("10.0.0.1", &ss), h->str, h->len, &out), ==, 0);
	gint64 took = g_get_monotonic_time() - start;
	unsigned i = 200000 - NETADDR_XFF_MAX_HOPS;
	g_autofree char *want = g_strdup_printf("10.%u.%u.%u", i >> 16 & 255, i >> 8 & 255, i & 255);
	assert_text(&out, want);
	g_test_message("X-Forwarded-For of %zu bytes: %" G_GINT64_FORMAT " us", h->len, took);

	/* One entry of 1 MiB: garbage, found out after a few bytes. */
	g_string_truncate(h, 0);
	for (unsigned n = 0; n < (1u << 20); n++)
		g_string_append_c(h, '1');
	g_assert_cmpint(netaddr_client(t, sock("10.0.0.1", &ss), h->str, h->len, &out), ==, 0);
	assert_text(&out, "10.0.0.1");
	g_string_free(h, TRUE);
	netaddr_cidrs_free(t);
}

static struct addrlimit *limiter(unsigned max_addresses, unsigned conns, unsigned regs)
{
	struct addrlimit_limits l = { max_addresses, conns, regs, 0 };
	struct addrlimit *al = NULL;
	g_assert_cmpint(addrlimit_new(&l, &al), ==, 0);
	return al;
}

static struct addrlimit_stats stats(const struct addrlimit *al)
{
	struct addrlimit_stats s;
	addrlimit_get_stats(al, &s);
	return s;
}

static void test_conns_limit(void)
{
	struct addrlimit *al = limiter(100, 3, 60);
	struct netaddr a = addr("198.51.100.7"), b = addr("198.51.100.8");

	for (int i = 0; i < 3; i++)
		g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, -EDQUOT);
	g_assert_cmpuint(addrlimit_conn_count(al, &a), ==, 3);
	/* Other addresses are independent. */
	g_assert_cmpint(addrlimit_conn_open(al, &b), ==, 0);
	g_assert_cmpuint(addrlimit_conn_count(al, &b), ==, 1);
	/* A close makes room again. */
	addrlimit_conn_close(al, &a);
	g_assert_cmpuint(addrlimit_conn_count(al, &a), ==, 2);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, -EDQUOT);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 2);
	addrlimit_free(al);
}

static void test_conns_v6_prefix(void)
{
	struct addrlimit *al = limiter(100, 2, 60);
	struct netaddr a1 = addr("2001:db8:1:2::1"), a2 = addr("2001:db8:1:2:ffff::9"),
		       other = addr("2001:db8:1:3::1");

	/* One /64 is one address. */
	g_assert_cmpint(addrlimit_conn_open(al, &a1), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &a2), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &a1), ==, -EDQUOT);
	g_assert_cmpuint(addrlimit_conn_count(al, &a2), ==, 2);
	g_assert_cmpint(addrlimit_conn_open(al, &other), ==, 0);
	/* IPv4 is never grouped. */
	struct netaddr v4a = addr("198.51.100.7"), v4b = addr("198.51.100.6");
	g_assert_cmpint(addrlimit_conn_open(al, &v4a), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &v4a), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &v4b), ==, 0);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 4);
	addrlimit_free(al);
}

static void test_conns_drop_at_zero(void)
{
	struct addrlimit *al = limiter(100, 0, 60); /* 0: no limit, still counted */
	struct netaddr a = addr("198.51.100.7"), b = addr("198.51.100.8");

	for (int i = 0; i < 1000; i++)
		g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	g_assert_cmpuint(addrlimit_conn_count(al, &a), ==, 1000);
	for (int i = 0; i < 1000; i++)
		addrlimit_conn_close(al, &a);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 0);
	/* A close that was never counted changes nothing. */
	addrlimit_conn_close(al, &b);
	addrlimit_conn_close(al, &a);
	g_assert_cmpuint(addrlimit_conn_count(al, &a), ==, 0);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 0);
	addrlimit_free(al);
}

static void test_conns_table_full(void)
{
	struct addrlimit *al = limiter(2, 10, 60);
	struct netaddr a = addr("198.51.100.1"), b = addr("198.51.100.2"), c = addr("198.51.100.3");

	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	g_assert_cmpint(addrlimit_conn_open(al, &b), ==, 0);
	/* Full: a new address is refused, known ones still served. */
	g_assert_cmpint(addrlimit_conn_open(al, &c), ==, -ENOSPC);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	g_assert_cmpuint(stats(al).conn_table_full, ==, 1);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 2);
	/* Once an address leaves, there is room. */
	addrlimit_conn_close(al, &b);
	g_assert_cmpint(addrlimit_conn_open(al, &c), ==, 0);
	addrlimit_free(al);
}

/* Attempts N registrations from A at NOW; how many were allowed. */
static unsigned regs(struct addrlimit *al, const struct netaddr *a, int64_t now, unsigned n)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++)
		ok += addrlimit_register(al, a, now) == 0;
	return ok;
}

static void test_regs_limit(void)
{
	struct addrlimit *al = limiter(100, 100, 60);
	struct netaddr a = addr("198.51.100.7"), b = addr("2001:db8::1");

	/* 60 at once, then one a second. */
	g_assert_cmpuint(regs(al, &a, T0, 100), ==, 60);
	g_assert_cmpint(addrlimit_register(al, &a, T0 + SEC - 1), ==, -EAGAIN);
	g_assert_cmpint(addrlimit_register(al, &a, T0 + SEC), ==, 0);
	g_assert_cmpint(addrlimit_register(al, &a, T0 + SEC), ==, -EAGAIN);
	/* Independent addresses. */
	g_assert_cmpuint(regs(al, &b, T0 + SEC, 100), ==, 60);
	/* Trying every 100 ms for a minute, both ends included: the 60 at
	 * once and the 60 regained, the worst case of any 60 s. */
	struct netaddr d = addr("198.51.100.10");
	unsigned ok = 0;
	for (int64_t t = T0; t <= T0 + 60 * SEC; t += SEC / 10)
		ok += regs(al, &d, t, 1);
	g_assert_cmpuint(ok, ==, 120);
	/* After a quiet minute, the whole burst again. */
	g_assert_cmpuint(regs(al, &a, T0 + 200 * SEC, 100), ==, 60);

	/* A low rate: 6 a minute is one every 10 s. */
	struct addrlimit_limits l = { 100, 100, 6, 0 };
	g_assert_cmpint(addrlimit_set_limits(al, &l), ==, 0);
	struct netaddr c = addr("198.51.100.9");
	g_assert_cmpuint(regs(al, &c, T0, 10), ==, 6);
	g_assert_cmpuint(regs(al, &c, T0 + 9 * SEC, 10), ==, 0);
	g_assert_cmpuint(regs(al, &c, T0 + 10 * SEC, 10), ==, 1);
	addrlimit_free(al);
}

/* Failures and successes have budgets apart: successes never spend the
 * failure budget, a spent failure budget refuses everything from the
 * address (-EAGAIN), the success ceiling is its own (-EDQUOT). */
static void test_regs_split(void)
{
	const struct addrlimit_limits l = { .max_addresses = 100, .regs_per_minute = 120,
					    .failed_per_minute = 3 };
	struct addrlimit *al = NULL;
	struct netaddr a = addr("192.0.2.1"), b = addr("192.0.2.2");
	unsigned ok = 0;

	g_assert_cmpint(addrlimit_new(&l, &al), ==, 0);
	for (int i = 0; i < 200 && addrlimit_register_check(al, &a, T0) == 0; i++, ok++)
		addrlimit_register_done(al, &a, true, T0);
	g_assert_cmpuint(ok, ==, 120);
	g_assert_cmpint(addrlimit_register_check(al, &a, T0), ==, -EDQUOT);
	for (int i = 0; i < 3; i++) {
		g_assert_cmpint(addrlimit_register_check(al, &b, T0), ==, 0);
		addrlimit_register_done(al, &b, false, T0);
	}
	g_assert_cmpint(addrlimit_register_check(al, &b, T0), ==, -EAGAIN);
	/* A failure regained in 20 s; one success a half second. */
	g_assert_cmpint(addrlimit_register_check(al, &b, T0 + 20 * SEC), ==, 0);
	g_assert_cmpint(addrlimit_register_check(al, &a, T0 + SEC / 2), ==, 0);
	/* Both idle again: swept. */
	g_assert_cmpuint(addrlimit_sweep(al, T0 + 61 * SEC), ==, 2);
	addrlimit_free(al);
}

static void test_regs_sweep(void)
{
	struct addrlimit *al = limiter(100000, 100, 60);
	struct netaddr a;

	for (unsigned i = 0; i < 1000; i++) {
		struct in_addr in = { htonl(0xc6336400u + i) }; /* 198.51.100.0 + i */
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = in };
		netaddr_from_sockaddr((struct sockaddr *)&sin, &a);
		g_assert_cmpint(addrlimit_register(al, &a, T0), ==, 0);
	}
	struct netaddr heavy = addr("203.0.113.1");
	g_assert_cmpuint(regs(al, &heavy, T0, 60), ==, 60);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 1001);
	/* Nothing is full again before a token's time (1 s). */
	g_assert_cmpuint(addrlimit_sweep(al, T0 + SEC - 1), ==, 0);
	/* One attempt each: full again after 1 s and forgotten. */
	g_assert_cmpuint(addrlimit_sweep(al, T0 + SEC), ==, 1000);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 1);
	/* The drained one is remembered until its bucket is full: 60 s. */
	g_assert_cmpuint(addrlimit_sweep(al, T0 + 60 * SEC - 1), ==, 0);
	g_assert_cmpint(addrlimit_register(al, &heavy, T0 + 30 * SEC), ==, 0);
	g_assert_cmpuint(regs(al, &heavy, T0 + 30 * SEC, 100), ==, 29);
	g_assert_cmpuint(addrlimit_sweep(al, T0 + 90 * SEC), ==, 1);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 0);
	g_assert_cmpuint(stats(al).reg_evictions, ==, 0);
	addrlimit_free(al);
}

static void test_regs_table_full(void)
{
	struct addrlimit *al = limiter(3, 100, 60);
	struct netaddr a = addr("198.51.100.1"), b = addr("198.51.100.2"), c = addr("198.51.100.3"),
		       d = addr("198.51.100.4"), e = addr("198.51.100.5");

	g_assert_cmpuint(regs(al, &a, T0, 100), ==, 60);
	regs(al, &b, T0 + 1, 1);
	regs(al, &c, T0 + 2, 1);
	/* Full: the least recently used (a) is forgotten, never refused. */
	g_assert_cmpint(addrlimit_register(al, &d, T0 + 3), ==, 0);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 3);
	g_assert_cmpuint(stats(al).reg_evictions, ==, 1);
	/* a comes back with a full bucket (evicting b). */
	g_assert_cmpuint(regs(al, &a, T0 + 4, 100), ==, 60);
	/* Using c makes d the oldest: e evicts d. */
	regs(al, &c, T0 + 5, 1);
	regs(al, &e, T0 + 6, 1);
	g_assert_cmpuint(stats(al).reg_evictions, ==, 3);
	g_assert_cmpuint(regs(al, &a, T0 + 7, 1), ==, 0); /* a is still remembered */
	/* A lower cap on reload forgets the oldest at once. */
	struct addrlimit_limits l = { 1, 100, 60, 0 };
	g_assert_cmpint(addrlimit_set_limits(al, &l), ==, 0);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 1);
	g_assert_cmpuint(regs(al, &a, T0 + 8, 1), ==, 0); /* the one kept: the latest */
	addrlimit_free(al);
}

static void test_reload(void)
{
	struct addrlimit *al = limiter(100, 3, 60);
	struct netaddr a = addr("198.51.100.7");

	for (int i = 0; i < 3; i++)
		g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	/* A lower limit keeps the open connections, refuses new ones. */
	struct addrlimit_limits l = { 100, 2, 0, 0 };
	g_assert_cmpint(addrlimit_set_limits(al, &l), ==, 0);
	g_assert_cmpuint(addrlimit_conn_count(al, &a), ==, 3);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, -EDQUOT);
	addrlimit_conn_close(al, &a);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, -EDQUOT);
	addrlimit_conn_close(al, &a);
	g_assert_cmpint(addrlimit_conn_open(al, &a), ==, 0);
	/* No registration limit: nothing tracked. */
	g_assert_cmpuint(regs(al, &a, T0, 1000), ==, 1000);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 0);
	/* Back on: a fresh burst. */
	l.regs_per_minute = 10;
	g_assert_cmpint(addrlimit_set_limits(al, &l), ==, 0);
	g_assert_cmpuint(regs(al, &a, T0, 1000), ==, 10);
	/* Out of range: refused, the old limits stay. */
	struct addrlimit_limits bad = { 0, 2, 10, 0 };
	g_assert_cmpint(addrlimit_set_limits(al, &bad), ==, -EINVAL);
	bad = (struct addrlimit_limits){ 100, 2, 60 * RATELIMIT_MAX + 1, 0 };
	g_assert_cmpint(addrlimit_set_limits(al, &bad), ==, -EINVAL);
	struct addrlimit *none = NULL;
	g_assert_cmpint(addrlimit_new(&bad, &none), ==, -EINVAL);
	g_assert_null(none);
	g_assert_cmpuint(regs(al, &a, T0 + 6 * SEC, 1000), ==, 1);
	addrlimit_free(al);
}

static void fill_addresses(struct netaddr *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		/* 2001:db8:IIII:IIII::1, a /64 each */
		memset(v[i].b, 0, sizeof v[i].b);
		v[i].b[0] = 0x20, v[i].b[1] = 0x01, v[i].b[2] = 0x0d, v[i].b[3] = 0xb8;
		memcpy(v[i].b + 4, &i, sizeof i);
		v[i].b[15] = 1;
	}
}

static void test_bench(void)
{
	const unsigned n = 100000;
	struct addrlimit *al = limiter(n, 100, 60);
	struct netaddr *v = g_new(struct netaddr, n);
	gint64 start, took;

	fill_addresses(v, n);
	start = g_get_monotonic_time();
	for (unsigned i = 0; i < n; i++)
		g_assert_cmpint(addrlimit_conn_open(al, &v[i]), ==, 0);
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_conn_open, new address: %.0f ns (%u addresses)",
		       (double)took * 1000 / n, n);

	/* A thousand addresses, as a typical table: in cache. */
	unsigned total = 0;
	start = g_get_monotonic_time();
	for (unsigned r = 0; r < 1000; r++)
		for (unsigned i = 0; i < 1000; i++)
			total += addrlimit_conn_count(al, &v[i]);
	took = g_get_monotonic_time() - start;
	g_assert_cmpuint(total, ==, 1000 * 1000);
	g_test_message("addrlimit_conn_count, 1000 addresses looked up again and again: %.0f ns",
		       (double)took / 1000);

	total = 0;
	start = g_get_monotonic_time();
	for (unsigned r = 0; r < 10; r++)
		for (unsigned i = 0; i < n; i++)
			total += addrlimit_conn_count(al, &v[(i * 7919u) % n]);
	took = g_get_monotonic_time() - start;
	g_assert_cmpuint(total, ==, 10 * n);
	g_test_message("addrlimit_conn_count, lookup in %u: %.0f ns", n,
		       (double)took * 1000 / (10 * n));

	start = g_get_monotonic_time();
	for (unsigned i = 0; i < n; i++)
		addrlimit_register(al, &v[i], T0);
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_register, new address: %.0f ns", (double)took * 1000 / n);
	start = g_get_monotonic_time();
	for (unsigned i = 0; i < n; i++)
		addrlimit_register(al, &v[(i * 7919u) % n], T0 + SEC / 2);
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_register, known address: %.0f ns", (double)took * 1000 / n);

	start = g_get_monotonic_time();
	g_assert_cmpuint(addrlimit_sweep(al, T0 + SEC), ==, 0); /* none full yet */
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_sweep over %u entries, none idle: %" G_GINT64_FORMAT " us", n,
		       took);
	start = g_get_monotonic_time();
	g_assert_cmpuint(addrlimit_sweep(al, T0 + 2 * SEC), ==, ADDRLIMIT_SWEEP_MAX);
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_sweep dropping %u entries: %" G_GINT64_FORMAT " us",
		       ADDRLIMIT_SWEEP_MAX, took);
	/* The rest goes over the next sweeps. */
	unsigned left = n - ADDRLIMIT_SWEEP_MAX, sweeps = 0;
	while (addrlimit_sweep(al, T0 + 3 * SEC))
		sweeps++;
	g_assert_cmpuint(sweeps, ==, (left + ADDRLIMIT_SWEEP_MAX - 1) / ADDRLIMIT_SWEEP_MAX);
	g_assert_cmpuint(stats(al).reg_addresses, ==, 0);

	/* The worst sweep: every entry drained, none full again. */
	for (unsigned i = 0; i < n; i++)
		regs(al, &v[i], T0 + 10 * SEC, 60);
	start = g_get_monotonic_time();
	g_assert_cmpuint(addrlimit_sweep(al, T0 + 12 * SEC), ==, 0);
	took = g_get_monotonic_time() - start;
	g_test_message("addrlimit_sweep over %u entries, all examined, none idle: %" G_GINT64_FORMAT
		       " us", n, took);

	for (unsigned i = 0; i < n; i++)
		addrlimit_conn_close(al, &v[i]);
	g_assert_cmpuint(stats(al).conn_addresses, ==, 0);
	g_free(v);
	addrlimit_free(al);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/netaddr/parse", test_parse);
	g_test_add_func("/netaddr/cidrs/good", test_cidrs_good);
	g_test_add_func("/netaddr/cidrs/bad", test_cidrs_bad);
	g_test_add_func("/netaddr/xff", test_xff);
	g_test_add_func("/netaddr/xff/long", test_xff_long);
	g_test_add_func("/addrlimit/conns/limit", test_conns_limit);
	g_test_add_func("/addrlimit/conns/v6-prefix", test_conns_v6_prefix);
	g_test_add_func("/addrlimit/conns/drop-at-zero", test_conns_drop_at_zero);
	g_test_add_func("/addrlimit/conns/table-full", test_conns_table_full);
	g_test_add_func("/addrlimit/regs/limit", test_regs_limit);
	g_test_add_func("/addrlimit/regs/split", test_regs_split);
	g_test_add_func("/addrlimit/regs/sweep", test_regs_sweep);
	g_test_add_func("/addrlimit/regs/table-full", test_regs_table_full);
	g_test_add_func("/addrlimit/reload", test_reload);
	g_test_add_func("/addrlimit/bench", test_bench);
	return g_test_run();
}
