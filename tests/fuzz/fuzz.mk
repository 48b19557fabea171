# The libFuzzer harnesses, built by "make fuzz" (Makefile.am) with clang.
# GNU make only, and kept out of automake: the daemon's sources are
# compiled again here, instrumented for coverage and sanitized
# (-fsanitize=fuzzer-no-link,address,undefined), into tests/fuzz/obj/ of
# the build tree, so the gcc objects of the normal build are untouched.
# The caller passes srcdir, FUZZ_CC, CPPFLAGS (AM_CPPFLAGS), DEPS_CFLAGS,
# DEPS_LIBS, SOURCES (the convenience library's) and HARNESSES.

FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(FUZZ_SAN) -DFUZZ_LIBFUZZER
OBJ = tests/fuzz/obj
# The harnesses are held to the project's warnings.
FUZZ_WARN = -Wformat=2 -Wshadow -Wmissing-prototypes -Wstrict-prototypes
BIN = tests/fuzz/bin

# daemon.c is left out: no harness needs the composition root.
LIB_SRC = $(filter-out src/daemon/daemon.c,$(filter %.c,$(SOURCES)))
LIB_OBJ = $(patsubst src/%.c,$(OBJ)/src/%.o,$(LIB_SRC))
# Test helpers a harness uses (token minting).
HELPER_OBJ = $(OBJ)/tests/jwtmint.o
FUZZ_COMMON = $(OBJ)/tests/fuzz/fuzz-common.o

all: $(HARNESSES:%=$(BIN)/fuzz-%)

$(OBJ)/src/%.o: $(srcdir)/src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEPS_CFLAGS) -MMD -MP -c -o $@ $<

$(OBJ)/tests/%.o: $(srcdir)/tests/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -I$(srcdir)/tests $(FUZZ_CFLAGS) $(FUZZ_WARN) -Werror -fsanitize=fuzzer-no-link $(DEPS_CFLAGS) -MMD -MP -c -o $@ $<

$(OBJ)/librtcsignal-fuzz.a: $(LIB_OBJ)
	rm -f $@ && ar cr $@ $^

$(BIN)/fuzz-%: $(OBJ)/tests/fuzz/fuzz-%.o $(FUZZ_COMMON) $(HELPER_OBJ) $(OBJ)/librtcsignal-fuzz.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(DEPS_LIBS)

.SECONDARY:
.PHONY: all
-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
