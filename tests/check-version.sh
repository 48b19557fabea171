#!/bin/sh
# The version lives in configure.ac (AC_INIT) alone: debian/changelog,
# rpm/rtcsignald.spec and the first entry of NEWS must name the same one.  Run by make check and by
# make dist, so a release cannot ship with them apart.  TAP.
# Usage: check-version.sh [SRCDIR [VERSION]]
src=${1:-${G_TEST_SRCDIR:-$(dirname "$0")}/..}
version=${2:-$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' "$src/configure.ac")}
deb=$(sed -n '1s/^[^ ]* (\([^)-]*\)\(-[^)]*\)\{0,1\}).*/\1/p' "$src/debian/changelog")
rpm=$(sed -n 's/^Version:[[:space:]]*//p' "$src/rpm/rtcsignald.spec")
news=$(sed -n 's/^Version \([^ ]*\).*/\1/p' "$src/NEWS" | head -1)
echo "1..3"
status=0
for pair in "debian/changelog:$deb" "rpm/rtcsignald.spec:$rpm" "NEWS:$news"; do
	file=${pair%%:*} v=${pair#*:}
	if [ -n "$version" ] && [ "$v" = "$version" ]; then
		echo "ok - $file says $v"
	else
		echo "not ok - $file says '$v', configure.ac '$version'"
		status=1
	fi
done
exit $status
