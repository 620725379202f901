# ballast build.
#
# Targets:
#   make               build ./ballast (-O2 -g, warnings are errors)
#   make asan          build build/asan/ballast with AddressSanitizer + UBSan (pools bypassed)
#   make tsan          build build/tsan/ballast with ThreadSanitizer (pools bypassed)
#   make integration-tsan  the multi-threaded integration tests (TSAN_TESTS) against it;
#                      a data race fails the test (suppressions: tests/tsan.supp)
#   make lint          cppcheck and clang-tidy (.clang-tidy) on src/: no finding, or a
#                      suppression at its line with the reason (tests/cppcheck.supp)
#   make run           install missing packages, build (-j$(nproc)), run examples/quickstart.conf
#   make test          install missing packages, build (-j$(nproc)), run unit tests and the
#                      fuzz corpora (fuzz-replay), then the integration suite against
#                      ./ballast, on the io_uring loop and against the ASan build side by side
#                      (tests/integration/run-passes.sh: the tests marked serial after, one
#                      pass at a time), then test-multinode; says how long it takes and
#                      prints a line as each suite starts
#   make unit          the include-layer check, then the unit tests (cmocka)
#   make check-layers  the include graph is a stack with no cycle (scripts/check-layers.sh)
#   make integration   integration tests only (pytest) against $(BALLAST_BIN)
#   make integration-uring  the same with `events { use io_uring; }` in every config (part
#                      of make test; skipped with the reason where the kernel refuses io_uring)
#   make fuzz          build the libFuzzer targets (clang) and run each for FUZZ_SECONDS
#                      (tests/fuzz/README.md); new inputs go to build/fuzz/corpus/TARGET
#   make fuzz-replay   replay every seed and crash reproducer in tests/fuzz/ through each
#                      target built with cc and make asan's sanitizers (part of make test)
#   make test-multinode  a keepalived pair of ballast nodes in network namespaces, failed
#                      over under a steady client: one line per case (tests/multinode/run.sh;
#                      needs root, ip netns and keepalived, says why when skipped)
#   make bench         ballast, nginx and HAProxy side by side (plain HTTP/1.1, TLS, HTTP/2,
#                      L4, cache and gzip rows; BENCH_ROWS=http,tls,h2,stream,cache,gzip picks); the
#                      http rows also against the no-parse floor relay (bench/floor.sh); writes
#                      bench/RESULTS.md (bench/README.md)
#   make bench-uring   ballast's epoll and io_uring backends side by side (bench/uring.sh)
#   make bench-balancers  nanoseconds per pick for every balancing algorithm
#   make bench-logs    nanoseconds per request for a log line and for request/trace ids
#   make bench-limits  nanoseconds per limit_req check with 1M keys in the zone
#   make bench-h2      make bench's HTTP/2 rows only (BENCH_ROWS=h2)
#   make bench-gzip    gzip MB/s at levels 1 and 6 against nginx (make bench's gzip rows alone)
#   make bench-hostile p99 of normal clients under slowloris, slow POST, slow and non-readers
#                      and 5000 idle connections, against nginx (bench/hostile.py)
#   make bench-cache   cache hits/s and CPU per hit against nginx's proxy_cache (make bench's
#                      cache rows alone)
#   make bench-scale   1/2/4/8 workers against nginx and HAProxy, pinned where the cores are
#   make bench-callgrind  instructions per proxied request by function, idle connection bytes
#   make bench-static  static small-file requests/s and CPU per request against nginx
#   make install       install the binary, man page, systemd unit, docs and (unless present)
#                      /etc/ballast/ballast.conf and mime.types; PREFIX, DESTDIR and the
#                      *DIR switches below place them (docs/operations.md, "Installing")
#   make uninstall     remove what install put there, except the files in /etc/ballast
#   make clean
#
# Switches:
#   CC=...             compiler (default cc)
#   NO_POOL=1          bypass the buffer pools (implied by asan) so ASan sees every buffer
#   NO_STATS=1         compile the per-worker statistics counters away (they stay 0), to
#                      measure what they cost (bench/RESULTS.md, "Metrics")
#   FUZZ_SECONDS=60    seconds per target for make fuzz; FUZZ_TARGETS=... picks targets
#   PYTEST_ARGS=...    extra pytest arguments, e.g. PYTEST_ARGS="-k smuggling -x"
#   PREFIX=/usr/local  install prefix; SBINDIR=$(PREFIX)/sbin, MANDIR=$(PREFIX)/share/man,
#                      DOCDIR=$(PREFIX)/share/doc/ballast,
#                      SYSTEMDUNITDIR=$(PREFIX)/lib/systemd/system, SYSCONFDIR=/etc (the
#                      binary's default -c is /etc/ballast/ballast.conf whatever PREFIX is)
#   DESTDIR=...        staging root prepended to every installed path (packaging)

CC       ?= cc
CSTD     := -std=gnu17
WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter
CFLAGS   ?= -O2 -g
CPPFLAGS += -Isrc -D_GNU_SOURCE
# x86-64 GCC's generic tuning expands a memcpy whose size it can bound (under 8 KiB) into an
# inline `rep movsq`, whose start-up costs tens of cycles on the short copies of the request
# path: three of them held 60% of bl_proxy_upstream_head's samples, 1% of the worker's CPU at
# 200 connections (bench/RESULTS.md, "rep movsq"). glibc's memcpy picks its method by size at
# run time. (memset stays inline: its `rep stos` clearing a request measured no worse.)
ifneq ($(filter x86_64%,$(shell $(CC) -dumpmachine 2>/dev/null)),)
ifeq ($(shell $(CC) -mmemcpy-strategy=libcall:-1:noalign -x c -c -o /dev/null /dev/null 2>/dev/null && echo ok),ok)
TUNE     := -mmemcpy-strategy=libcall:-1:noalign
endif
endif
LDLIBS   += -ljansson -lssl -lcrypto -lpthread -lm -lpcre2-8 -lnghttp2 -lz -luring -lhiredis

ifeq ($(NO_POOL),1)
CPPFLAGS += -DBL_NO_POOL
endif
ifeq ($(NO_STATS),1)
CPPFLAGS += -DBL_NO_STATS
endif

# Event loop backends (src/core/loop_*.c) are #included by loop.c, not compiled on their own.
SRCS      := $(filter-out src/core/loop_%.c,$(shell find src -name '*.c' | sort))
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
OBJS      := $(SRCS:%.c=build/obj/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=build/obj/%.o)
ASAN_OBJS := $(SRCS:%.c=build/asan/%.o)

UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/unit/%)
UNIT_DEPS := $(UNIT_BINS:=.d)

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

BALLAST_BIN ?= ./ballast
NPROC       := $(shell nproc 2>/dev/null || echo 1)

PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
DOCDIR         ?= $(PREFIX)/share/doc/ballast
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR     ?= /etc

.PHONY: install uninstall test-multinode
.PHONY: fuzz fuzz-build fuzz-replay tsan integration-tsan lint lint-cppcheck deps-lint
.PHONY: all asan run test unit check-layers integration integration-asan bench bench-balancers bench-logs bench-limits bench-h2 bench-gzip bench-hostile bench-static deps deps-test clean help
.PHONY: integration-uring bench-uring
.PHONY: bench-cache
.PHONY: bench-scale bench-callgrind

all: ballast

help:
	@sed -n '2,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

ballast: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(TUNE) $(CPPFLAGS) -MMD -MP -c -o $@ $<

build/libballast.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

asan: build/asan/ballast

build/asan/ballast: $(ASAN_OBJS)
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(LDLIBS)

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(ASAN_FLAGS) $(CPPFLAGS) -DBL_NO_POOL -MMD -MP -c -o $@ $<

# Unit tests may #include the .c under test to reach its statics; the archive then supplies
# only the modules the test did not include.
build/unit/%: tests/unit/%.c build/libballast.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) -Itests/unit -MMD -MP -MF $@.d -MT $@ -o $@ $< build/libballast.a -lcmocka $(LDLIBS)

# ThreadSanitizer: its own objects, as asan's. The integration tests that run several workers
# beside the control thread's reloads, health checks and admin API (what shares state); the
# whole suite works too but takes about an hour on 2 cores. -Wno-tsan: TSan does not model
# standalone fences (the queue's store-fence-load pairs in proxy.c and attempt.c); a report
# through one would be checked by hand, none has come up.
TSAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -Wno-tsan
TSAN_OBJS  := $(SRCS:%.c=build/tsan/%.o)
TSAN_TESTS ?= tests/integration/test_reload.py tests/integration/test_admin.py \
              tests/integration/test_balancing.py tests/integration/test_failover.py \
              tests/integration/test_upstream.py tests/integration/test_shutdown.py \
              tests/integration/test_queue.py tests/integration/test_adaptive.py \
              tests/integration/test_limits.py tests/integration/test_access.py

tsan: build/tsan/ballast

build/tsan/ballast: $(TSAN_OBJS)
	$(CC) $(TSAN_FLAGS) -o $@ $^ $(LDLIBS)

build/tsan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(TSAN_FLAGS) $(CPPFLAGS) -DBL_NO_POOL -MMD -MP -c -o $@ $<

integration-tsan: build/tsan/ballast
	BALLAST_BIN=build/tsan/ballast BALLAST_TSAN=1 \
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp second_deadlock_stack=1 history_size=4" \
	    pytest -q $(TSAN_TESTS) $(PYTEST_ARGS)

# Static analysis. clang-tidy runs per file (make -j2 lint) and leaves a stamp, so a second
# run looks only at what changed (a header change looks at everything again).
LINT_STAMPS := $(SRCS:%.c=build/lint/%.ok)
LINT_HDRS   := $(shell find src -name '*.h')

deps-lint:
	@scripts/install-deps.sh lint

lint: lint-cppcheck $(LINT_STAMPS) build/bench/floor_relay build/lint/bench/floor_relay.ok
	@echo "make lint: cppcheck and clang-tidy found nothing"

lint-cppcheck: deps-lint
	cppcheck -q --std=c11 --enable=warning,portability,performance --inline-suppr \
	    --suppressions-list=tests/cppcheck.supp -Isrc -D_GNU_SOURCE -D__linux__ \
	    --error-exitcode=1 --template='{file}:{line}: {severity}: {id}: {message}' src

build/lint/%.ok: %.c .clang-tidy $(LINT_HDRS) | deps-lint
	@mkdir -p $(dir $@)
	clang-tidy --quiet $< -- $(CSTD) $(CPPFLAGS) && touch $@

# Fuzzing (tests/fuzz/README.md). The library is built a third time with clang's coverage
# instrumentation; the replay build reuses make asan's objects.
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_CC      := clang
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS    := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/%)
REPLAY_BINS  := $(FUZZ_TARGETS:%=build/fuzz-replay/%)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(CPPFLAGS) -DBL_NO_POOL -MMD -MP -c -o $@ $<

build/fuzz/libballast.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: tests/fuzz/fuzz_%.c build/fuzz/libballast.a
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_FLAGS) -fsanitize=fuzzer $(CPPFLAGS) -Itests/fuzz -MMD -MP -MF $@.d -MT $@ -o $@ $< build/fuzz/libballast.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus/$$t build/fuzz/artifacts/$$t; \
	    dict=$$(case $$t in conf) echo tests/fuzz/conf.dict;; admin) echo tests/fuzz/json.dict;; h2) echo tests/fuzz/h2.dict;; dns) echo tests/fuzz/dns.dict;; *) echo tests/fuzz/http.dict;; esac); \
	    regs=; [ -d tests/fuzz/regressions/$$t ] && regs=tests/fuzz/regressions/$$t; \
	    echo "make fuzz: $$t for $(FUZZ_SECONDS)s"; \
	    build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -dict=$$dict \
	        -artifact_prefix=build/fuzz/artifacts/$$t/ build/fuzz/corpus/$$t \
	        tests/fuzz/corpus/$$t $$regs >build/fuzz/$$t.log 2>&1; rc=$$?; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' build/fuzz/$$t.log; \
	    if [ $$rc -ne 0 ]; then tail -40 build/fuzz/$$t.log; \
	        echo "make fuzz: $$t failed; the input is in build/fuzz/artifacts/$$t/"; exit 1; fi; \
	done

build/asan/libballast.a: $(filter-out build/asan/src/main.o,$(ASAN_OBJS))
	@rm -f $@
	ar rcs $@ $^

build/fuzz-replay/%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c build/asan/libballast.a
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(ASAN_FLAGS) $(CPPFLAGS) -DBL_NO_POOL -Itests/fuzz -MMD -MP -MF $@.d -MT $@ -o $@ $< tests/fuzz/replay.c build/asan/libballast.a $(LDLIBS)

fuzz-replay: $(REPLAY_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    build/fuzz-replay/$$t tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t || exit 1; \
	done

deps:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) ballast
	@echo "ballast: listening on :8080, balancing over three demo servers on :9001-:9003"
	@echo "ballast: try   curl -i http://127.0.0.1:8080/"
	./ballast -c examples/quickstart.conf

check-layers:
	@scripts/check-layers.sh src

unit: check-layers $(UNIT_BINS)
	@fail=0; pass=0; for t in $(UNIT_BINS); do \
	    if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "unit test programs: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

integration: ballast
	BALLAST_BIN=$(BALLAST_BIN) pytest -q tests/integration $(PYTEST_ARGS)

integration-asan: build/asan/ballast
	BALLAST_BIN=build/asan/ballast BALLAST_ASAN=1 pytest -q tests/integration $(PYTEST_ARGS)

# The same suite with every config's workers on the io_uring loop backend (conftest puts
# `use io_uring;` into the events block); skipped, with the reason, where the kernel refuses.
integration-uring: ballast
	BALLAST_BIN=$(BALLAST_BIN) BALLAST_EVENTS_USE=io_uring pytest -q tests/integration $(PYTEST_ARGS)

# What `make test` takes on the 2-core VMs, in minutes: 8m34s measured from a fresh clone on
# 2026-12-07 (build, unit, integration 833 tests 3m38s, the same under ASan 4m26s).
# The io_uring run (integration-uring) adds one plain suite: as long as `make integration`
# (9m25s against 8m52s for epoll on 2026-12-07, on a loaded 2-core VM).
# Fresh clone at 0eceec4 on 2026-12-07 (quiet 2-core VM): build + unit + fuzz replay ~5 min,
# integration 6m43s, io_uring 6m42s, ASan 9m00s, the keepalived pair ~1 min: about 27 in all.
# That is near the 30-minute line: trim before adding another whole-suite pass.
# Since then the three integration passes run side by side, each over two pytest-xdist
# workers, and the tests marked serial after them (tests/integration/run-passes.sh): the
# passes mostly wait (all three took 300 CPU seconds in all, user+sys), so side by side they
# take about as long as the longest, ASan. Measured at 19553f2 on 2026-12-07 on the shared
# 2-core VM at load average 25-34 (eight other sessions' builds and suites): the three passes
# 12m53s, 13m00s and 14m41s side by side, the serial tests 75 s, 16m00s for the integration
# step in all (the three old targets side by side, same VM at load 16-20: 14m14s, 13m49s,
# 17m25s). make test at cb9267e, same VM at load 21-30, objects and unit tests already built:
# 13m06s, 13m07s, 14m52s side by side, serial 107 s, 17m24s to the end of the integration
# step. On a quiet 2-core VM that should make about 5 (build, unit, fuzz replay) + 6 + 1
# (an estimate: not yet measured on a quiet VM).
TEST_MINUTES := 13
test: deps-test
	@echo "make test: build, unit tests, integration tests (epoll, io_uring, ASan side by side);" \
	      "about $(TEST_MINUTES) minutes on 2 cores"
	@echo "make test: [1/4] building ./ballast and build/asan/ballast (-j$(NPROC))"
	@$(MAKE) --no-print-directory -j$(NPROC) all asan
	@echo "make test: [2/4] unit tests, then the fuzz corpora replayed (tests/fuzz/)"
	@$(MAKE) --no-print-directory -j$(NPROC) unit
	@$(MAKE) --no-print-directory -j$(NPROC) fuzz-replay
	@echo "make test: [3/4] integration tests against ./ballast, on the io_uring loop and" \
	      "under ASan, side by side (tests/integration/run-passes.sh)"
	@tests/integration/run-passes.sh
	@echo "make test: [4/4] the keepalived pair in network namespaces (tests/multinode/)"
	@$(MAKE) --no-print-directory test-multinode
	@echo "make test: all suites passed"

# Exit 77 from the script: the machine cannot run it (not root, no netns, no keepalived); it
# says why and the target passes. Bounded: the script gives up after 150 s, timeout after 300.
test-multinode: ballast
	@timeout 300 tests/multinode/run.sh ./ballast; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

bench: deps-test ballast build/bench/floor_relay
	bench/run.sh

# The floor of issue 14 (bench/floor_relay.c, bench/floor.sh): a relay that does not parse.
# Not part of the ballast build; make lint compiles it and runs clang-tidy on it.
build/bench/floor_relay: bench/floor_relay.c
	@mkdir -p build/bench
	$(CC) $(CSTD) $(WARN) $(CFLAGS) -D_GNU_SOURCE -o $@ $< -luring

# ballast's epoll and io_uring loop backends side by side at 50, 200, 2000 connections
# (bench/uring.sh); appends to bench/RESULTS.md, "io_uring backend".
bench-uring: deps-test ballast
	bench/uring.sh

bench-balancers: build/libballast.a
	@mkdir -p build/bench
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) -o build/bench/balancers bench/balancers.c build/libballast.a $(LDLIBS)
	build/bench/balancers

bench-logs: build/libballast.a
	@mkdir -p build/bench
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) -o build/bench/log_cost bench/log_cost.c build/libballast.a $(LDLIBS)
	build/bench/log_cost

bench-limits: build/libballast.a
	@mkdir -p build/bench
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(CPPFLAGS) -o build/bench/limit_req bench/limit_req.c build/libballast.a $(LDLIBS)
	build/bench/limit_req

bench-h2: deps-test ballast
	BENCH_ROWS=h2 bench/run.sh

bench-gzip: deps-test ballast
	bench/gzip.sh

bench-hostile: deps-test ballast
	bench/hostile.py

bench-cache: deps-test ballast
	bench/cache.sh

bench-scale: deps-test ballast
	bench/scale.sh

bench-callgrind: deps-test ballast
	bench/callgrind.py

bench-static: deps-test ballast
	bench/static.sh

# The unit and the man page get the installed paths; an existing ballast.conf or mime.types
# is an operator's and stays as it is.
install: ballast
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
	    $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSCONFDIR)/ballast
	install -m 0755 ballast $(DESTDIR)$(SBINDIR)/ballast
	sed 's,/usr/local/share/doc/ballast,$(DOCDIR),' man/ballast.8 >$(DESTDIR)$(MANDIR)/man8/ballast.8
	sed -e 's,/usr/local/sbin/,$(SBINDIR)/,g' -e 's, /etc/ballast/, $(SYSCONFDIR)/ballast/,g' \
	    dist/ballast.service >$(DESTDIR)$(SYSTEMDUNITDIR)/ballast.service
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(filter-out examples/certs examples/keepalived examples/html,$(wildcard examples/*)) $(DESTDIR)$(DOCDIR)/examples/
	install -d $(DESTDIR)$(DOCDIR)/examples/keepalived $(DESTDIR)$(DOCDIR)/examples/html
	install -m 0644 $(wildcard examples/keepalived/*) $(DESTDIR)$(DOCDIR)/examples/keepalived/
	install -m 0644 examples/html/* $(DESTDIR)$(DOCDIR)/examples/html/
	@for f in dist/ballast.conf conf/mime.types; do \
	    t=$(DESTDIR)$(SYSCONFDIR)/ballast/$${f##*/}; \
	    if [ -e "$$t" ]; then echo "install: $$t exists, left as it is"; \
	    else echo "install -m 0644 $$f $$t"; install -m 0644 $$f "$$t"; fi; \
	done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ballast $(DESTDIR)$(MANDIR)/man8/ballast.8 \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/ballast.service
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "uninstall: $(DESTDIR)$(SYSCONFDIR)/ballast is left as it is"

clean:
	rm -rf build ballast

# Headers (and the .c files unit tests include) each object and unit test was built from.
-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d) $(TSAN_OBJS:.o=.d) $(UNIT_DEPS) $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d) $(REPLAY_BINS:=.d)
