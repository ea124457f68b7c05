# dualwrite build. `make` builds everything with warnings as errors; `make SAN=1` builds with
# ASan+UBSan into build/san; `make test` installs what is missing, builds with sanitizers (override
# with TEST_SAN=0), starts a private Kafka + PostgreSQL stack, runs every suite and stops it again.

SAN ?= 0
TEST_SAN ?= 1
ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT := -O1
else
BUILD := build/release
SANFLAGS :=
OPT := -O2
endif

CC ?= cc
# `make V=1` shows the full compiler command lines.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif
WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wvla -Wwrite-strings -Wno-format-nonliteral -Werror
PKGS := rdkafka libcurl libcjson libpq libmicrohttpd
CFLAGS = -std=gnu11 $(OPT) -g $(WARN) $(SANFLAGS) -MMD -MP
CPPFLAGS = -D_GNU_SOURCE -Icommon -Itests/lib -Itests/emulators $(shell pkg-config --cflags $(PKGS))
LDFLAGS = $(SANFLAGS)
LDLIBS = $(shell pkg-config --libs $(PKGS)) -lpthread -lm
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBCOMMON := $(BUILD)/libcommon.a

EMU_SRC := $(filter-out tests/emulators/main.c,$(wildcard tests/emulators/*.c))
EMU_OBJ := $(EMU_SRC:%.c=$(BUILD)/obj/%.o)
LIBEMU := $(BUILD)/libemu.a
TESTLIB_SRC := $(wildcard tests/lib/*.c)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/obj/%.o)
LIBTEST := $(BUILD)/libtest.a

PROGRAMS := $(notdir $(patsubst %/,%,$(dir $(wildcard workers/*/main.c))))
PROGRAM_BINS := $(PROGRAMS:%=$(BUILD)/bin/%)
EMU_BIN := $(if $(wildcard tests/emulators/main.c),$(BUILD)/bin/dw-emulator)
# The demo's driver (deploy/demo/demo.sh, docs/demo.md).
DEMO_SRC := $(wildcard tests/demo/*.c)
DEMO_BIN := $(if $(DEMO_SRC),$(BUILD)/bin/dw-demo)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
E2E_SRC := $(wildcard tests/e2e/test_*.c)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
TEST_BINS := $(UNIT_SRC:tests/%.c=$(BUILD)/tests/%) $(INTEG_SRC:tests/%.c=$(BUILD)/tests/%) \
	$(E2E_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all build deps test test-unit e2e up down demo clean lint format bench valgrind
.DEFAULT_GOAL := all
# Keep object files between runs (they are intermediates of the pattern rules).
.SECONDARY:

all: build
build: $(PROGRAM_BINS) $(EMU_BIN) $(DEMO_BIN) $(TEST_BINS) $(BENCH_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# SQL migrations are compiled into the programs, so `ctl migrate` needs no files at run time.
MIGRATIONS := $(sort $(wildcard schemas/sql/*.sql))
$(BUILD)/gen/migrations_data.c: $(MIGRATIONS) deploy/tools/embed-sql.sh
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)
	$(Q)sh deploy/tools/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@
COMMON_OBJ += $(BUILD)/obj/migrations_data.o

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^
$(LIBEMU): $(EMU_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^
$(LIBTEST): $(TESTLIB_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

define program_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard workers/$(1)/*.c)) $(LIBCOMMON)
	@mkdir -p $$(dir $$@)
	$$(call say,LD,$$@)
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

$(BUILD)/bin/dw-emulator: $(BUILD)/obj/tests/emulators/main.o $(LIBEMU) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/dw-demo: $(DEMO_SRC:%.c=$(BUILD)/obj/%.o) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBTEST) $(LIBEMU) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

deps:
	@deploy/local/deps.sh

# Builds the release tree too (its -O2 warnings differ from the sanitizer build's), then runs every
# suite against a private stack (.state/test, ports 29xxx) so a running `make up`
# stack is left alone. Ends with one summary line: "N passed, N failed".
test: deps lint
	@$(MAKE) --no-print-directory SAN=0 build
	@$(MAKE) --no-print-directory SAN=$(TEST_SAN) build
	@DW_BUILD=build/$(if $(filter 1,$(TEST_SAN)),san,release) tests/run.sh

# Unit suites only: no services needed.
test-unit:
	@$(MAKE) --no-print-directory SAN=$(TEST_SAN) build
	@DW_BUILD=build/$(if $(filter 1,$(TEST_SAN)),san,release) tests/run.sh unit

# End-to-end suites only (capture + apply both ways on both emulators); `make test` runs them too.
e2e: deps
	@$(MAKE) --no-print-directory SAN=$(TEST_SAN) build
	@DW_BUILD=build/$(if $(filter 1,$(TEST_SAN)),san,release) tests/run.sh e2e

bench: deps
	@$(MAKE) --no-print-directory SAN=0 build
	@DW_BUILD=build/release tests/bench/run.sh

# The long-running programs (capture, apply; release build) under valgrind through integration scenarios.
valgrind: deps
	@$(MAKE) --no-print-directory SAN=0 build
	@tests/integration/valgrind.sh

up: deps build
	@DW_BUILD=$(BUILD) deploy/local/stack.sh up

# The demo (docs/demo.md): stack, seeded emulators, capture, apply, initial sync, the scenario and
# a per-map table; leaves everything running (`make down` stops it).
demo: deps
	@$(MAKE) --no-print-directory SAN=0 $(PROGRAMS:%=build/release/bin/%) build/release/bin/dw-emulator build/release/bin/dw-demo
	@DW_BUILD=build/release deploy/demo/demo.sh run

# Stops the demo's processes (if any), then the stack.
down:
	@deploy/demo/demo.sh down

lint:
	@! git grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|atol|gets)\s*\(' -- '*.c' '*.h' | grep -v snprintf \
		|| (echo "lint: banned calls above (see STYLE.md)"; exit 1)
	@echo "lint: ok"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
