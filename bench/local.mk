# Benchmark tools, built with everything else and never installed: the
# load generator and the bare lws echo server it compares the daemon
# with.  bench/run drives both; bench/README.md says what the numbers mean.
noinst_PROGRAMS = bench/echo-floor

bench_echo_floor_SOURCES = bench/echo-floor.c
bench_echo_floor_CFLAGS = $(AM_CFLAGS) $(DEPS_CFLAGS)
bench_echo_floor_LDADD = src/librtcsignal.a $(DEPS_LIBS)
