#!/bin/bash
# The checks run through check(), which shellcheck does not see.
# shellcheck disable=SC2317
# Every key of src/util/config.c's table (printed by "test-config --list-keys")
# is documented in rtcsignald.conf(5) with the table's default and reload
# class, and with its bounds where the page states them ("1 to 3600"),
# and shipped in data/rtcsignald.conf with the table's default and
# reload class (a "(reload)" in the comment above it); neither
# documents a key the table lacks.  The keys of an [issuer NAME] group
# are in the man page likewise, and in the shipped file's commented
# example, with the default where the table has one.  TAP.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")}/..
build=${G_TEST_BUILDDIR:-$(dirname "$0")}
man="$src/docs/rtcsignald.conf.5.in"
conf="$src/data/rtcsignald.conf"

# "group|name|reload or restart|min|max|default" for each key of the table.
table=$("$build/test-config" --list-keys)
if [ -z "$table" ]; then
	echo "Bail out! no keys from $build/test-config --list-keys"
	exit 1
fi
# "group|name|reload or restart|default|bounds" for each key of the man
# page: bounds are the first "A to B" of the key's paragraph.
documented=$(awk '
	function flush() { if (key != "") print key "|" bounds; key = "" }
	/^\.SH "\[/ { flush(); g = $0; sub(/^\.SH "\[/, "", g); sub(/\]"$/, "", g); next }
	/^\.SH/ { flush(); g = ""; next }
	g != "" && /^\\fB[a-z_]+\\fR = .* \\\(em (reload|restart)$/ {
		flush()
		name = $0; sub(/^\\fB/, "", name); sub(/\\fR.*/, "", name)
		def = $0; sub(/^[^=]*= /, "", def); sub(/ \\\(em .*/, "", def)
		if (def == "(empty)") def = ""
		key = g "|" name "|" $NF "|" def; bounds = ""
		next
	}
	/^\.(TP|TQ)/ { flush(); next }
	key != "" && bounds == "" && match($0, /[0-9]+ to [0-9]+/) {
		bounds = substr($0, RSTART, RLENGTH); sub(/ to /, "..", bounds)
	}
	END { flush() }' "$man")
# "group|name|default|reload or restart" for each key of the shipped
# file; the commented [issuer NAME] examples count as group "issuer
# NAME".  A key is "reload" when the comment it follows says (reload):
# a comment starts after a blank line or after keys.
shipped=$(awk '
	/^\[/ { g = $0; gsub(/[][]/, "", g); after_key = 1; next }
	/^#\[issuer / { g = "issuer NAME"; next }
	/^$/ { after_key = 1; next }
	/^#?[a-z_]+ =/ { line = $0; sub(/^#/, "", line); name = line; sub(/ =.*/, "", name)
		def = line; sub(/^[^=]*=[[:space:]]*/, "", def)
		after_key = 1; print g "|" name "|" def "|" when; next }
	/^#/ { if (after_key) when = "restart"; after_key = 0; if (/\(reload\)/) when = "reload" }' "$conf")

n=0 failed=0
check() { # description, then a command that succeeds if it holds
	local what=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n $what"
	else
		echo "not ok $n $what"
		failed=1
	fi
}
field() { # group, name, list, field number: that key's field, or "missing"
	awk -F'|' -v g="$1" -v k="$2" -v f="$4" '$1 == g && $2 == k { print $f; found = 1; exit }
		END { if (!found) print "missing" }' <<<"$3"
}
key_ok() { # group name when min max default
	local m c b
	m=$(field "$1" "$2" "$documented" 3)
	[ "$m" = "$3" ] || { echo "# rtcsignald.conf(5): '$m', the table: $3"; return 1; }
	m=$(field "$1" "$2" "$documented" 4)
	[ "$m" = "$6" ] || { echo "# rtcsignald.conf(5) default: '$m', the table: '$6'"; return 1; }
	b=$(field "$1" "$2" "$documented" 5)
	if [ -n "$b" ] && [ "$b" != "$4..$5" ]; then
		echo "# rtcsignald.conf(5) bounds: $b, the table: ${4:-none}..${5:-none}"
		return 1
	fi
	c=$(field "$1" "$2" "$shipped" 3)
	[ "$c" != missing ] || { echo "# not in data/rtcsignald.conf"; return 1; }
	# An issuer's example may show a value where the table has no default.
	[ "$c" = "$6" ] || { [ "$1" = "issuer NAME" ] && [ -z "$6" ]; } ||
		{ echo "# data/rtcsignald.conf default: '$c', the table: '$6'"; return 1; }
	# The issuer keys' reload class is said once, for the group.
	c=$(field "$1" "$2" "$shipped" 4)
	[ "$1" = "issuer NAME" ] || [ "$c" = "$3" ] ||
		{ echo "# data/rtcsignald.conf: $c, the table: $3"; return 1; }
}
while IFS='|' read -r group name when min max def; do
	check "[$group] $name in rtcsignald.conf(5) and data/rtcsignald.conf: $when, default '$def'" \
		key_ok "$group" "$name" "$when" "$min" "$max" "$def"
done <<<"$table"

in_table() { [ "$(field "$1" "$2" "$table" 2)" != missing ] || { echo "# not in the table"; return 1; }; }
while IFS='|' read -r group name _; do
	check "rtcsignald.conf(5) [$group] $name is a key of the table" in_table "$group" "$name"
done <<<"$documented"
while IFS='|' read -r group name _; do
	check "data/rtcsignald.conf [$group] $name is a key of the table" in_table "$group" "$name"
done <<<"$shipped"
echo "1..$n"
exit $failed
