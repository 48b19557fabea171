/* Unit tests: addresses, CIDR lists, X-Forwarded-For. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

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
	g_assert_true(in(l, "10.0.0.0"));
	g_assert_true(in(l, "10.255.255.255"));
	g_assert_false(in(l, "11.0.0.0"));
	g_assert_false(in(l, "9.255.255.255"));
	g_assert_true(in(l, "192.168.1.7"));
	g_assert_false(in(l, "192.168.1.8"));
	g_assert_true(in(l, "::1"));
	g_assert_false(in(l, "::2"));
	g_assert_true(in(l, "fd12:3456::1"));
	g_assert_false(in(l, "fe00::1"));
	/* An IPv4 client on a dual-stack socket arrives mapped. */
	g_assert_true(in(l, "::ffff:10.1.2.3"));
	g_assert_false(in(l, "::ffff:11.1.2.3"));
	/* ...but 10/8 is not ::a00:0/104 or any other IPv6 network. */
	g_assert_false(in(l, "::10.1.2.3"));
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	g_assert_false(netaddr_in_cidrs(l, (struct sockaddr *)&un));
	netaddr_cidrs_free(l);

	/* Blanks, ',' as separator, empty entries, odd prefix lengths. */
	l = cidrs(" 172.16.0.0/12 ,, 2001:db8:80::/41 ; ");
	g_assert_cmpuint(netaddr_cidrs_count(l), ==, 2);
	g_assert_true(in(l, "172.31.255.255"));
	g_assert_false(in(l, "172.32.0.0"));
	g_assert_true(in(l, "2001:db8:ff::1"));
	g_assert_false(in(l, "2001:db8:7f::1"));
	netaddr_cidrs_free(l);

	/* 0.0.0.0/0 is every IPv4 address and nothing else; ::/0 everything. */
	l = cidrs("0.0.0.0/0");
	g_assert_true(in(l, "203.0.113.9"));
	g_assert_true(in(l, "::ffff:203.0.113.9"));
	g_assert_false(in(l, "2001:db8::1"));
	netaddr_cidrs_free(l);
	l = cidrs("::/0");
	g_assert_true(in(l, "203.0.113.9"));
	g_assert_true(in(l, "2001:db8::1"));
	netaddr_cidrs_free(l);

	/* A mapped network written in IPv6 is an IPv4 network. */
	l = cidrs("::ffff:10.0.0.0/104");
	g_assert_true(in(l, "10.9.8.7"));
	g_assert_false(in(l, "11.9.8.7"));
	netaddr_cidrs_free(l);

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

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/netaddr/parse", test_parse);
	g_test_add_func("/netaddr/cidrs/good", test_cidrs_good);
	g_test_add_func("/netaddr/cidrs/bad", test_cidrs_bad);
	g_test_add_func("/netaddr/xff", test_xff);
	g_test_add_func("/netaddr/xff/long", test_xff_long);
	return g_test_run();
}
