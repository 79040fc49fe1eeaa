# shopd — one non-recursive Makefile.
#
#   make            build build/shopd (release)
#   make run        install missing packages, build, start with demo data on SQLite
#   make test       unit tests (Criterion) + integration tests (node:test, real binary)
#   make asan       the same tests against an AddressSanitizer + UBSan build
#   make fuzz       build the libFuzzer targets and run each for FUZZ_SECONDS
#   make bench      benchmarks (see docs/benchmarks.md)
#   make format     clang-format the sources
#   make check-deps verify that includes point down the layer stack
#
# Objects live under build/<variant>/; V=1 shows the commands.

SHELL := /bin/bash
VERSION := $(shell cat VERSION)
VARIANT ?= release
BUILD := build/$(VARIANT)
CC ?= cc

PKGS := libuv jansson libcrypto sqlite3 libpcre2-8 cjose
# libcurl's headers only: shopd loads the library at run time when a JWKS URL is
# configured (src/auth/jwt.c says why).
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) libcurl 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
ifeq ($(CI),true)
WERROR ?= -Werror
endif
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -DSHOPD_VERSION='"$(VERSION)"' -Isrc $(PKG_CFLAGS) $(WARN) $(WERROR) -MMD -MP
LIBS := $(PKG_LIBS) -lhttp_parser -lm

# The release server allocates with mimalloc (Debian's libmimalloc): linked first, it
# replaces malloc for shopd and every library in the process. A store.transaction
# spends a quarter of its time in glibc malloc/free (docs/benchmarks.md). Sanitizer
# builds keep the sanitizers' own allocator.
ifeq ($(VARIANT),asan)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDOPT := -fsanitize=address,undefined
MALLOC_LIBS :=
else ifeq ($(VARIANT),tsan)
OPT := -O1 -g -fsanitize=thread
LDOPT := -fsanitize=thread
MALLOC_LIBS :=
else
OPT := -O2 -g
LDOPT :=
MALLOC_LIBS := -lmimalloc
endif
CFLAGS ?=
ALL_CFLAGS := $(BASE_CFLAGS) $(OPT) $(CFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRCS := $(sort $(wildcard src/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/main.o
UNIT_SRCS := $(sort $(wildcard tests/unit/*/*.c))
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)
FUZZ_SRCS := $(sort $(wildcard fuzz/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))

ifeq ($(VARIANT),release)
BIN := build/shopd
else
BIN := $(BUILD)/shopd
endif
UNIT_BIN := $(BUILD)/unit-tests

.PHONY: all run test unit integration asan tsan fuzz bench clean format check-deps deps test-deps
# Keep intermediate objects (the fuzz builds link them through pattern rules).
.SECONDARY:

all: $(BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# The version is compiled in: a new VERSION rebuilds the file that prints it.
$(MAIN_OBJ): VERSION

$(BUILD)/libshopd.a: $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(BUILD)/libshopd.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDOPT) -o $@ $^ $(MALLOC_LIBS) $(LIBS)

$(UNIT_BIN): $(UNIT_OBJS) $(BUILD)/libshopd.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDOPT) -o $@ $^ $(LIBS) $(shell pkg-config --libs criterion)

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --test

run: deps
	$(MAKE) all
	@echo "Development tokens from config/ecommerce.json (for development only; a production config has none):"
	@sed -n 's/^ *"\([A-Za-z0-9_-]*token[A-Za-z0-9_-]*\)": *{"userId": *"\([^"]*\)", *"roles": *\[\([^]]*\)\].*/  \1  → \2 (\3)/p' config/ecommerce.json
	$(BIN) serve --config config/ecommerce.json --data-dir ./data

unit: $(UNIT_BIN)
	$(UNIT_BIN) --jobs 2

integration: $(BIN)
	SHOPD_BIN=$(abspath $(BIN)) node --test --test-concurrency=2 tests/integration/

test: test-deps
	@scripts/check-deps
	$(MAKE) unit integration

# Criterion runs each test in a child process whose sanitizer report does not always
# fail the test, so the output is also searched for reports.
asan:
	@mkdir -p build/asan
	@set -o pipefail; $(MAKE) VARIANT=asan unit integration 2>&1 | tee build/asan/test.log
	@if grep -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" build/asan/test.log; then \
	  echo "asan: sanitizer reports found (see build/asan/test.log)"; exit 1; fi

# ThreadSanitizer: the server (the event loop, the database's writer thread, the
# checkpointer) under the integration tests. Criterion's runner does not start under
# ThreadSanitizer, so the unit tests are left out. A race fails the test whose server
# reported it, and the log is searched as well.
tsan:
	@mkdir -p build/tsan
	@set -o pipefail; $(MAKE) VARIANT=tsan integration 2>&1 | tee build/tsan/test.log
	@if grep -E "WARNING: ThreadSanitizer" build/tsan/test.log; then \
	  echo "tsan: ThreadSanitizer reports found (see build/tsan/test.log)"; exit 1; fi

FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := $(BASE_CFLAGS) -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (fuzz)")
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/fuzz/%.o $(FUZZ_LIB_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $^ $(LIBS)

fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_BINS); do \
	  name=$$(basename $$t); \
	  mkdir -p build/fuzz/corpus/$$name; \
	  echo "fuzzing $$name for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $$( [ -f fuzz/$$name.dict ] && echo -dict=fuzz/$$name.dict ) \
	    build/fuzz/corpus/$$name fuzz/corpus/$$name || exit 1; \
	done

BENCH_BINS := $(BENCH_SRCS:bench/%.c=build/bench/%)
build/bench/%: bench/%.c
	@mkdir -p build/bench
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -o $@ $< $(shell pkg-config --cflags --libs jansson) -lm

bench: deps $(BIN) $(BENCH_BINS)
	bench/run.sh

format:
	clang-format -i $(LIB_SRCS) src/main.c $(wildcard src/*/*.h) $(UNIT_SRCS) $(FUZZ_SRCS) $(BENCH_SRCS)

check-deps:
	@scripts/check-deps

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(UNIT_OBJS:.o=.d) $(FUZZ_LIB_OBJS:.o=.d)
