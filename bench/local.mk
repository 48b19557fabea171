# Benchmark tools, built with everything else and never installed: the
# load generator, the bare lws echo server it compares the daemon with,
# and the cost of discovery and of the rate limit in the core, without
# transport.  bench/run drives the first two; bench/README.md says what
# the numbers mean.
noinst_PROGRAMS = bench/rtcsignal-bench bench/echo-floor bench/discovery-core \
	bench/ratelimit-core

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

bench_discovery_core_SOURCES = bench/discovery-core.c \
	bench/workload.c bench/workload.h \
	bench/wsconn.c bench/wsconn.h
bench_discovery_core_CFLAGS = $(AM_CFLAGS) $(DEPS_CFLAGS)
bench_discovery_core_LDADD = src/librtcsignal.a $(DEPS_LIBS)

bench_ratelimit_core_SOURCES = bench/ratelimit-core.c
bench_ratelimit_core_CFLAGS = $(AM_CFLAGS) $(DEPS_CFLAGS)
bench_ratelimit_core_LDADD = src/librtcsignal.a $(DEPS_LIBS)

EXTRA_DIST += bench/run bench/README.md bench/tls-bench bench/soak bench/cluster.py
