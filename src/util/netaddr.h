/* netaddr: address classification for admission rules: loopback, lists of
 * CIDRs (trusted proxies), and the client address behind those proxies. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IP address in 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d):
 * one form for both families, compact enough to be a hash key. */
struct netaddr {
	uint8_t b[16];
};

/* Text of an address: INET6_ADDRSTRLEN, with its NUL. */
#define NETADDR_STRLEN 46

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and unix sockets. */
bool netaddr_is_loopback(const struct sockaddr *sa);

/* -EAFNOSUPPORT for anything but AF_INET and AF_INET6 (unix sockets). */
int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* A bare numeric address of LEN bytes ("10.1.2.3", "2001:db8::1",
 * "::ffff:10.1.2.3"); no port, no brackets, no zone.  -EINVAL otherwise. */
int netaddr_parse(const char *text, size_t len, struct netaddr *out);
bool netaddr_is_v4(const struct netaddr *a);
/* 127.0.0.0/8 or ::1. */
bool netaddr_is_loopback_addr(const struct netaddr *a);
/* Dotted quad for IPv4 (mapped or not), RFC 5952 text for IPv6. */
void netaddr_to_string(const struct netaddr *a, char out[NETADDR_STRLEN]);

/* A list of networks. */
struct netaddr_cidrs;

/* Parses "10.0.0.0/8;192.168.1.7;::1/128;fd00::/8": entries separated by
 * ';' or ',', blanks around them ignored, an address without a prefix
 * meaning that one host.  IPv4-mapped IPv6 networks (::ffff:10.0.0.0/104)
 * are IPv4 networks.  An empty list is valid and matches nothing.  A bad
 * entry (not a numeric address, prefix out of range, bits set after the
 * prefix) gives -EINVAL and an ERR (G_KEY_FILE_ERROR_INVALID_VALUE) that
 * quotes it. */
int netaddr_cidrs_parse(const char *text, struct netaddr_cidrs **out, GError **err);
void netaddr_cidrs_free(struct netaddr_cidrs *list);
unsigned netaddr_cidrs_count(const struct netaddr_cidrs *list);
/* LIST may be NULL (no networks).  An IPv4-mapped IPv6 address matches
 * IPv4 networks; a unix socket matches nothing. */
bool netaddr_in_cidrs(const struct netaddr_cidrs *list, const struct sockaddr *sa);
bool netaddr_cidrs_contain(const struct netaddr_cidrs *list, const struct netaddr *a);

/* At most this many X-Forwarded-For entries are examined. */
#define NETADDR_XFF_MAX_HOPS 32

/* The address to account and log for a connection from PEER whose request
 * carried X-Forwarded-For XFF (LEN bytes, NULL when absent; several
 * headers joined by ',').  PEER itself unless it is in TRUSTED; then the
 * XFF entries from the right: trusted ones are skipped, the first
 * untrusted one is the client.  A malformed entry, running out of entries
 * or NETADDR_XFF_MAX_HOPS entries stops the walk at the last trusted hop,
 * which is then the answer: garbage is never believed.  Entries may be
 * "a.b.c.d", "a.b.c.d:port", an IPv6 address, or "[v6]" with or without
 * ":port".  Work is bounded whatever LEN.  -EAFNOSUPPORT when PEER is not
 * an IP socket. */
int netaddr_client(const struct netaddr_cidrs *trusted, const struct sockaddr *peer,
		   const char *xff, size_t len, struct netaddr *out);
