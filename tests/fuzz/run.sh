#!/bin/sh
# Runs each libFuzzer harness of make fuzz for $FUZZ_SECONDS (default 60)
# from its seeds, with the JSON dictionary: "make fuzz-run", and .ci/run.
# Usage: run.sh SRCDIR NAME...  (in the build tree).  Prints one line per
# harness, "fuzz NAME: ok ..." or "fuzz NAME: FAILED ...", and exits 1
# when any harness crashed, leaked, timed out or tripped a sanitizer.
# A failing input is left in tests/fuzz/run/NAME/ (crash-*, leak-*,
# timeout-*, oom-*): copy it into tests/fuzz/regress/NAME/ so that
# make check replays it.
srcdir=$1
shift
seconds=${FUZZ_SECONDS:-60}
status=0
for name in "$@"; do
	bin=tests/fuzz/bin/fuzz-$name
	work=tests/fuzz/run/$name
	rm -rf "$work" && mkdir -p "$work/corpus"
	# NAME.options: extra libFuzzer flags (-max_len=...) of one harness.
	opts=$(cat "$srcdir/tests/fuzz/$name.options" 2>/dev/null)
	# New inputs go to the work corpus; the committed seeds and past
	# findings (regress/NAME) are read only.
	# shellcheck disable=SC2086
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
	"$bin" $opts -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -dict="$srcdir/tests/fuzz/json.dict" \
		-artifact_prefix="$work/" "$work/corpus" "$srcdir/tests/fuzz/corpus/$name" \
		$(ls -d "$srcdir/tests/fuzz/regress/$name" 2>/dev/null) \
		>"$work/log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
	ft=$(grep -o 'ft: [0-9]*' "$work/log" | tail -1)
	artifacts=$(ls "$work" | grep -E '^(crash|leak|timeout|oom)-' | tr '\n' ' ')
	if [ "$rc" -eq 0 ] && [ -z "$artifacts" ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$work/log"; then
		echo "fuzz $name: ok ($runs runs, $cov, $ft, ${seconds}s)"
	else
		echo "fuzz $name: FAILED (exit $rc) $artifacts"
		grep -E 'ERROR:|runtime error|FUZZ FINDING|SUMMARY' "$work/log" | head -5
		status=1
	fi
done
exit $status
