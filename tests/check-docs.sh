#!/bin/bash
# Every key of src/config.c's table is documented in rtcsignald.conf(5)
# with the reload behaviour the table gives it, and shipped in
# data/rtcsignald.conf with the same default as the man page.  TAP.
set -u
src=${G_TEST_SRCDIR:-$(dirname "$0")}/..
man="$src/docs/rtcsignald.conf.5.in"
conf="$src/data/rtcsignald.conf"

# "group name reload|restart" for each key of the table.
table=$(sed -n 's/^[[:space:]]*K\(R\{0,1\}\)("\([a-z_]*\)", "\([a-z_]*\)",.*/\2 \3 \1/p' "$src/src/config.c" |
	awk '{ print $1, $2, ($3 == "R" ? "restart" : "reload") }')
# "group name reload|restart default" for each key of the man page.
documented=$(awk '
	/^\.SH "\[/ { g = $0; sub(/^\.SH "\[/, "", g); sub(/\]"$/, "", g); gsub(/ /, "_", g); next }
	/^\.SH/ { g = ""; next }
	g != "" && /^\\fB[a-z_]+\\fR = .* \\\(em (reload|restart)$/ {
		name = $0; sub(/^\\fB/, "", name); sub(/\\fR.*/, "", name)
		def = $0; sub(/^[^=]*= /, "", def); sub(/ \\\(em .*/, "", def)
		if (def == "(empty)") def = ""
		print g, name, $NF, def
	}' "$man")
# "group name default" for each key of the shipped file.
shipped=$(awk '
	/^\[/ { g = $0; gsub(/[][]/, "", g); next }
	/^#?[a-z_]+ =/ { line = $0; sub(/^#/, "", line); name = line; sub(/ =.*/, "", name)
		def = line; sub(/^[^=]*=[[:space:]]*/, "", def); print g, name, def }' "$conf")

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
in_man() { grep -qxF "$1 $2 $3" <<<"$(cut -d' ' -f1-3 <<<"$documented")"; }
in_conf() { grep -q "^$1 $2\( \|$\)" <<<"$shipped"; }
same_default() {
	local m c
	m=$(awk -v g="$1" -v k="$2" '$1 == g && $2 == k { $1 = $2 = $3 = ""; sub(/^ +/, ""); print; exit }' <<<"$documented")
	c=$(awk -v g="$1" -v k="$2" '$1 == g && $2 == k { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' <<<"$shipped")
	[ "$m" = "$c" ] || { echo "# man: '$m', data/rtcsignald.conf: '$c'"; return 1; }
}

[ -n "$table" ] || { echo "Bail out! no keys found in src/config.c"; exit 1; }
documented_ok() {
	in_man "$@" || { echo "# not in rtcsignald.conf(5) as $3"; return 1; }
	in_conf "$1" "$2" || { echo "# not in data/rtcsignald.conf"; return 1; }
	same_default "$1" "$2"
}
while read -r group name when; do
	check "[$group] $name: rtcsignald.conf(5) ($when) and data/rtcsignald.conf, same default" \
		documented_ok "$group" "$name" "$when"
done <<<"$table"
# The keys of an [issuer NAME] group: in the man page, and in the shipped
# file's commented example.
issuer_keys=$(sed -n 's/^[[:space:]]*I("\([a-z_]*\)",.*/\1/p' "$src/src/config.c")
[ -n "$issuer_keys" ] || { echo "Bail out! no issuer keys found in src/config.c"; exit 1; }
issuer_documented() {
	in_man issuer_NAME "$1" reload || { echo "# not in rtcsignald.conf(5)"; return 1; }
	grep -q "^##\{0,1\}$1 =" "$conf" || { echo "# not in data/rtcsignald.conf"; return 1; }
}
for name in $issuer_keys; do
	check "[issuer NAME] $name: rtcsignald.conf(5) and data/rtcsignald.conf" issuer_documented "$name"
done
echo "1..$n"
exit $failed
