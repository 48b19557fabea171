# Benchmark tools, built with everything else and never installed: the
# load generator and the bare lws echo server it compares the daemon
# with.  bench/run drives both; bench/README.md says what the numbers mean.
noinst_PROGRAMS = bench/rtcsignal-bench bench/echo-floor

bench_rtcsignal_bench_SOURCES = bench/rtcsignal-bench.c \
	bench/crowd.c bench/crowd.h \
	bench/holders.c bench/holders.h \
	bench/report.c bench/report.h \
	bench/workload.c bench/workload.h \
	bench/wsconn.c bench/wsconn.h
bench_rtcsignal_bench_CFLAGS = $(AM_CFLAGS) $(DEPS_CFLAGS)
bench_rtcsignal_bench_LDADD = src/librtcsignal.a $(DEPS_LIBS) $(CRYPTO_LIBS)

bench_echo_floor_SOURCES = bench/echo-floor.c
bench_echo_floor_CFLAGS = $(AM_CFLAGS) $(DEPS_CFLAGS)
bench_echo_floor_LDADD = src/librtcsignal.a $(DEPS_LIBS)

EXTRA_DIST += bench/run bench/README.md
