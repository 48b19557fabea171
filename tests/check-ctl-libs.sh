#!/bin/sh
# rtcsignalctl links only what it uses: none of the daemon's libraries is
# among the shared objects it needs at run time (its ELF NEEDED entries,
# read with readelf rather than ldd, which would run the loader).  TAP.
# Usage: check-ctl-libs.sh [PROGRAM]
prog=${1:-${G_TEST_BUILDDIR:-$(dirname "$0")}/../src/rtcsignalctl}
command -v readelf >/dev/null || { echo "1..0 # SKIP no readelf"; exit 0; }
needed=$(readelf -d "$prog" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
[ -n "$needed" ] || { echo "Bail out! no NEEDED entries in $prog"; exit 1; }
echo "# $prog needs: $(printf '%s' "$needed" | tr '\n' ' ')"
n=0 status=0
for lib in libwebsockets libuv libjwt libmicrohttpd libsqlite3 libhiredis; do
	n=$((n + 1))
	found=$(printf '%s\n' "$needed" | grep "^$lib\.so")
	if [ -z "$found" ]; then
		echo "ok $n - not linked with $lib"
	else
		echo "not ok $n - linked with $found"
		status=1
	fi
done
echo "1..$n"
exit $status
