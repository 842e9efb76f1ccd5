# relureg: one non-recursive Makefile for the library, the binaries, the tests and the tools.
#
#   make            build/librelureg.a, build/release/librelureg.so and the binaries (release)
#   make install    the library: headers, .a, .so and relureg.pc under DESTDIR/PREFIX
#   make test       install missing Debian packages, build, run every test suite
#                   (NO_BROWSER=1: all but the browser suite, which runs npm ci)
#   make test-scale nginx on loopback in front of two reluregd (docker/'s topology, no containers)
#   make run        install missing packages, build, start reluregd with the demo models
#   make asan       C tests under AddressSanitizer + UndefinedBehaviorSanitizer (build/asan/)
#   make bench      benchmarks against PyTorch on this machine (bench/)
#   make fuzz       libFuzzer harnesses for a bounded time (FUZZ_SECONDS, default 60 each)
#   make format / format-check / clean
#
# Objects go to build/<variant>/<source path>.o so that variants never mix; V=1 shows commands.

.DEFAULT_GOAL := all
SHELL := /bin/bash

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
VARIANT ?= release
B := build
O := $(B)/$(VARIANT)
# Build packages and their versions (scripts/install-deps.sh --check; see its rule below).
DEPS_STAMP := $(B)/build-deps.txt

# BLAS policy (lib/core/blas.c): the OpenMP build of OpenBLAS, linked by explicit path because
# Debian's alternatives prefer the pthread build whenever both are installed.
OPENBLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
OPENBLAS_LIB := /usr/lib/x86_64-linux-gnu/openblas-openmp

CC := gcc
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ifeq ($(VARIANT),asan)
  OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
  # -O3 -fno-trapping-math rather than -O2: GCC 12 turns the elementwise selects (relu masks,
  # max-pool) into vector blends only at -O3, and only when it may evaluate both arms (no FP
  # traps are used here; results are unchanged). At -O2 they are branches that mispredict on
  # half the units. Never -ffast-math: it would drop the NaN/Inf checks and reorder sums.
  OPT := -O3 -fno-trapping-math
endif
ifeq ($(CI),true)
  WERROR := -Werror
endif
# In every build, CI or not: a function used without its declaration (a header from another
# package shadowing the one meant, as a generic cblas.h does OpenBLAS's) stops the build
# instead of linking a call through an `int` it never returns.
WERROR += -Werror=implicit-function-declaration -Werror=implicit-int
CPPFLAGS := -Ilib -Itests/common -isystem $(OPENBLAS_INC) -D_POSIX_C_SOURCE=200809L
CFLAGS := -std=c11 $(WARN) $(WERROR) $(OPT) -g -fopenmp -MMD -MP
LDFLAGS := $(OPT) -fopenmp -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB)
LDLIBS := -lopenblas -ljansson -lz -lm

LIB_SRCS := $(sort $(shell find lib -name '*.c'))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/%.o)
LIB_A := $(O)/librelureg.a

# ---- the shared library ----
# The version has one source, lib/core/version.h; the file name, the soname and relureg.pc
# read it from there. Before 1.0 any minor release may change the ABI, so the soname carries
# major.minor (librelureg.so.0.1); from 1.0 on, the major alone.
version_part = $(shell sed -n 's/^\#define RR_VERSION_$(1)  *\([0-9][0-9]*\)$$/\1/p' lib/core/version.h)
VERSION := $(call version_part,MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
ifneq ($(words $(subst ., ,$(VERSION))),3)
  $(error cannot read RR_VERSION_MAJOR/MINOR/PATCH from lib/core/version.h (got "$(VERSION)"))
endif
SOVERSION := $(if $(filter 0,$(call version_part,MAJOR)),0.$(call version_part,MINOR),$(call version_part,MAJOR))
SO_NAME := librelureg.so.$(SOVERSION)
SO_FILE := librelureg.so.$(VERSION)
LIB_SO := $(O)/$(SO_FILE)
# Its objects are the library's sources compiled again as position-independent code, so that
# the static library's objects (what the binaries and tests link) stay exactly as they were.
# Exports: lib/relureg.map keeps rr_ symbols and hides the rr__ internals; -fno-semantic-
# interposition lets calls inside the library stay direct, as in the static build.
PIC_OBJS := $(LIB_SRCS:%.c=$(O)/pic/%.o)
# Public headers: the umbrella and what it includes (installed, compiled as C and C++ by `abi`).
PUBLIC_HEADERS := relureg.h $(shell sed -n 's/^\#include "\(.*\)"$$/\1/p' lib/relureg.h)

# tests/unit/install holds programs of their own (main), built by `abi` against the install.
UNIT_SRCS := $(sort $(shell find tests/unit tests/common -name '*.c' -not -path 'tests/unit/install/*'))
UNIT_OBJS := $(UNIT_SRCS:%.c=$(O)/%.o)
REF_SRCS := $(sort $(wildcard tests/reference/*.c)) $(sort $(wildcard tests/common/*.c))
REF_OBJS := $(REF_SRCS:%.c=$(O)/%.o)
TEST_LDLIBS := -lcriterion $(LDLIBS)

SERVER_SRCS := $(sort $(shell find server -name '*.c'))
SERVER_OBJS := $(SERVER_SRCS:%.c=$(O)/%.o)

# Release binaries live in build/, other variants' in build/<variant>/.
BIN_DIR := $(if $(filter release,$(VARIANT)),$(B),$(O))
DAEMON := $(BIN_DIR)/reluregd
BINS := $(LIB_A) $(LIB_SO) $(BIN_DIR)/relureg-train $(BIN_DIR)/relureg-eval $(DAEMON) $(BIN_DIR)/relureg

PYTHON := /usr/bin/python3
REF_DIR := $(B)/ref
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RR_REF_DIR=$(abspath $(REF_DIR))

.PHONY: FORCE all install deps test check unit abi python reference e2e browser test-scale run demo results asan bench bench-fab-projection bench-scaling bench-http fuzz format format-check clean

all: $(BINS)
ifeq ($(VARIANT),release)
all: $(B)/librelureg.a
$(B)/librelureg.a: $(LIB_A)
	$(Q)cp $< $@
endif

$(O)/%.o: %.c $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(O)/pic/%.o: %.c $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fno-semantic-interposition -c $< -o $@

# Flags live here: objects rebuild when the Makefile changes.
$(LIB_OBJS) $(PIC_OBJS) $(UNIT_OBJS) $(REF_OBJS) $(SERVER_OBJS): Makefile

# Build dependencies, checked before anything compiles: one line naming `make deps` when a
# Debian package is missing. The check prints the build packages' versions; they are kept in
# DEPS_STAMP, rewritten only when they change, and every object depends on it, so objects
# compiled before a package was installed or upgraded are compiled again (-MMD cannot see
# that: the header it found first may still exist).
$(DEPS_STAMP): FORCE
	@mkdir -p $(B)
	$(Q)./scripts/install-deps.sh --check > $@.new || { rm -f $@.new; exit 1; }
	$(Q)if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi
FORCE:

$(LIB_A): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# librelureg.so.X.Y.Z with its soname link librelureg.so.X.Y and the development link
# librelureg.so beside it. --no-undefined: every symbol resolves against the libraries named.
$(LIB_SO): $(PIC_OBJS) lib/relureg.map
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script=lib/relureg.map \
		-Wl,--no-undefined $(LDFLAGS) -o $@ $(PIC_OBJS) $(LDLIBS)
	$(Q)ln -sfn $(SO_FILE) $(O)/$(SO_NAME) && ln -sfn $(SO_NAME) $(O)/librelureg.so

$(DAEMON): $(SERVER_OBJS) $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lmicrohttpd -lpthread $(LDLIBS)

# The command-line client (clients/c): libcurl + jansson only, no librelureg.
$(BIN_DIR)/relureg: $(O)/clients/c/relureg.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lcurl -ljansson

$(BIN_DIR)/relureg-train: $(O)/tools/relureg_train.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN_DIR)/relureg-eval: $(O)/tools/relureg_eval.o $(O)/tools/sha256.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Server units that stand alone (no libmicrohttpd calls) are tested in tests/unit/server.
UNIT_SERVER_OBJS := $(O)/server/sched.o $(O)/server/problem.o
# --wrap: tests/unit/core/test_gemm.c records every sgemm call the library makes.
$(O)/test-unit: $(UNIT_OBJS) $(UNIT_SERVER_OBJS) $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -Wl,--wrap=cblas_sgemm -o $@ $^ $(TEST_LDLIBS)

$(O)/test-reference: $(REF_OBJS) $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(TEST_LDLIBS)

$(O)/attack-probe: $(O)/tests/probe/attack_probe.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/blas-probe: $(O)/tests/probe/blas_probe.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- set-up ----
deps:
	$(Q)./scripts/install-deps.sh

# ---- install: the library for other programs (headers, .a, .so and its links, relureg.pc) ----
# Headers go to INCLUDEDIR/relureg/ with their subfolders (they include each other as
# "core/status.h"), so programs compile with `pkg-config --cflags relureg` and include
# <relureg.h>. DESTDIR stages the tree for packaging; relureg.pc names PREFIX, not DESTDIR.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# What a static link needs besides librelureg.a (the .so records these itself).
PC_LIBS_PRIVATE := -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) -lopenblas -ljansson -lz -lm \
	-lgomp -lpthread

install: $(LIB_A) $(LIB_SO)
	$(Q)install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/relureg
	$(Q)install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/librelureg.a
	$(Q)install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/$(SO_FILE)
	$(Q)ln -sfn $(SO_FILE) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	$(Q)ln -sfn $(SO_NAME) $(DESTDIR)$(LIBDIR)/librelureg.so
	$(Q)for h in $(PUBLIC_HEADERS); do \
	    install -D -m 644 lib/$$h $(DESTDIR)$(INCLUDEDIR)/relureg/$$h || exit 1; done
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)%,$${prefix}%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)%,$${prefix}%,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|$(PC_LIBS_PRIVATE)|' \
	    lib/relureg.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/relureg.pc

# ---- tests ----
# `test` installs what is missing, then runs every suite in a second make so that the build
# sees the freshly installed headers.
test: deps
	$(Q)$(MAKE) --no-print-directory check

# NO_BROWSER=1 leaves out `browser`, the one suite that downloads (npm ci of playwright-core).
check: unit python reference e2e $(if $(NO_BROWSER),,browser) test-scale

# The unit suite runs twice: as the environment has it, then with OPENBLAS_CORETYPE the other
# way (unset when it was set, else a core weaker than this CPU's), so that both branches of the
# kernel choice (core/blas.h) run every kernel test on every machine. OPENBLAS_L2_SIZE is left
# as it is: some CPUs need it.
unit: $(O)/test-unit $(O)/blas-probe abi
	@echo "== unit tests ($(VARIANT), OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE-unset})"
	$(Q)$(TEST_ENV) RR_BLAS_PROBE=$(abspath $(O)/blas-probe) $(O)/test-unit --jobs 2
	$(Q)if [ -n "$${OPENBLAS_CORETYPE-}" ]; then set -- env -u OPENBLAS_CORETYPE; c=unset; \
	else c=$$(env -u OPENBLAS_CORETYPE $(O)/blas-probe --weaker); set -- env OPENBLAS_CORETYPE=$$c; fi; \
	echo "== unit tests ($(VARIANT), OPENBLAS_CORETYPE=$$c)"; \
	"$$@" $(TEST_ENV) RR_BLAS_PROBE=$(abspath $(O)/blas-probe) $(O)/test-unit --jobs 2

# The library's surface: librelureg.so exports exactly tests/unit/exports.txt, the library
# holds no writable globals, and an install (staged under $(O)/install-test) serves a C and a
# C++ program through pkg-config, linked against the .so and, with --static, the .a.
abi: $(LIB_A) $(LIB_SO)
	@echo "== library surface: exports, globals, install + pkg-config, C and C++ ($(VARIANT))"
	$(Q)tests/unit/check_exports.sh $(LIB_SO) tests/unit/exports.txt
	$(Q)tests/unit/check_globals.sh $(LIB_A)
	$(Q)rm -rf $(O)/install-test
	$(Q)$(MAKE) --no-print-directory install DESTDIR=$(abspath $(O)/install-test) PREFIX=/usr/local \
		LIBDIR=/usr/local/lib INCLUDEDIR=/usr/local/include PKGCONFIGDIR=/usr/local/lib/pkgconfig
	$(Q)CC="$(CC)" CXX=g++ OPT="$(OPT)" tests/unit/check_install.sh $(abspath $(O)/install-test) \
		/usr/local $(VERSION) $(SO_NAME) tests/unit/exports.txt

python:
	@echo "== python tests"
	$(Q)$(PYTHON) -m unittest discover -s tests/python

# Reference tests: torch float64 autograd writes the cases at test time (nothing committed),
# then the C side recomputes and compares.
reference: $(O)/test-reference $(O)/attack-probe
	@echo "== reference cases (torch float64)"
	$(Q)mkdir -p $(REF_DIR)
	$(Q)OMP_NUM_THREADS=2 $(PYTHON) tests/reference/gen_core.py --out $(REF_DIR)
	$(Q)OMP_NUM_THREADS=2 $(PYTHON) tests/reference/gen_reg.py --out $(REF_DIR)
	$(Q)OMP_NUM_THREADS=2 $(PYTHON) tests/reference/gen_real.py --out $(REF_DIR)
	@echo "== reference tests ($(VARIANT))"
	$(Q)$(TEST_ENV) $(O)/test-reference --jobs 2
	@echo "== attack and certificate tests against torch ($(VARIANT))"
	$(Q)OMP_NUM_THREADS=2 RR_PROBE=$(abspath $(O)/attack-probe) RR_REF_DIR=$(abspath $(REF_DIR)) \
		$(PYTHON) -m unittest discover -s tests/reference -p 'test_*.py'

# ---- demo models (trained from Debian's Fashion-MNIST, cached under build/demo) ----
# lambda per regularizer: the largest of tools/sweep_lambda.sh's sweep whose clean test
# accuracy stays within 4 points of the plain MLP (docs/lambda-sweep.txt).
DEMO_DIR := $(B)/demo
DEMO_TRAIN = $(B)/relureg-train --epochs 5 --seed 1 --out $@
DEMO_FILES := $(addprefix $(DEMO_DIR)/,mlp.safetensors cnn.safetensors \
	mlp-input-gradient.safetensors mlp-jacobian.safetensors \
	mlp-cross-lipschitz.safetensors mlp-curvature.safetensors)

$(DEMO_DIR)/mlp.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch mlp
$(DEMO_DIR)/cnn.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch cnn
$(DEMO_DIR)/mlp-input-gradient.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch mlp --regularizer input_gradient --lambda 0.1
$(DEMO_DIR)/mlp-jacobian.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch mlp --regularizer jacobian --lambda 0.01
$(DEMO_DIR)/mlp-cross-lipschitz.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch mlp --regularizer cross_lipschitz --lambda 0.1
$(DEMO_DIR)/mlp-curvature.safetensors: | $(B)/relureg-train
	@mkdir -p $(DEMO_DIR) && echo "== demo model $@"
	$(Q)$(DEMO_TRAIN) --arch mlp --regularizer curvature --lambda 0.1

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory $(DEMO_FILES)

# docs/results.md from the demo models (not run by `make test`).
results: demo
	$(Q)$(PYTHON) tools/results.py --trainer $(B)/relureg-train --demo $(DEMO_DIR) --out docs/results.md

# Build, train the demo models when missing, and serve them on 127.0.0.1:8080.
RUN_ARGS ?=
run: demo
	@echo "== reluregd on http://127.0.0.1:8080 with the demo models (Ctrl-C stops it)"
	$(Q)exec $(B)/reluregd --models-dir $(DEMO_DIR) --static-dir clients/js $(RUN_ARGS)

# End-to-end: reluregd on a free loopback port, driven over HTTP (tests/e2e).
e2e: $(DAEMON) $(BIN_DIR)/relureg
	@echo "== end-to-end tests ($(VARIANT))"
	$(Q)cd tests/e2e && RELUREGD=$(abspath $(DAEMON)) RELUREG_CLI=$(abspath $(BIN_DIR)/relureg) \
		$(PYTHON) -m unittest discover -q -s . -p 'test_*.py'

# Browser tests: the JS client in Node and the dashboard in Debian's headless Chromium through
# playwright-core, installed by `npm ci` from tests/browser/package-lock.json (re-run when the
# lockfile changes). Screenshots: build/test-output/browser/.
BROWSER_NODE_MODULES := tests/browser/node_modules/.package-lock.json
$(BROWSER_NODE_MODULES): tests/browser/package-lock.json tests/browser/package.json
	$(Q)command -v node >/dev/null || { echo "browser tests need node (>= 20)" >&2; exit 1; }
	$(Q)node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || \
		{ echo "browser tests need node >= 20 (playwright-core's engines), have $$(node --version)" >&2; exit 1; }
	$(Q)cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	$(Q)touch $@

browser: $(DAEMON) $(BROWSER_NODE_MODULES)
	@echo "== browser tests (JS client in Node, dashboard in headless Chromium)"
	$(Q)RELUREGD=$(abspath $(DAEMON)) BROWSER_OUT=$(abspath $(B)/test-output/browser) \
		$(PYTHON) tests/browser/run.py

# Scale-out: Debian's nginx running docker/nginx.conf (rewritten for loopback) in front of two
# reluregd processes; static checks of docker/, traffic spread, job affinity, a replica
# SIGKILLed mid-stream (tests/scale).
test-scale: $(DAEMON) $(BIN_DIR)/relureg-eval
	@echo "== scale-out: nginx + two reluregd replicas, sharded evaluations ($(VARIANT))"
	$(Q)RELUREGD=$(abspath $(DAEMON)) RELUREG_EVAL=$(abspath $(BIN_DIR)/relureg-eval) $(PYTHON) tests/scale/test_scale.py

asan:
	$(Q)$(MAKE) --no-print-directory VARIANT=asan unit reference e2e

# ---- benchmarks (not tests) ----
$(O)/bench-core: $(O)/bench/bench_core.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench-reg: $(O)/bench/bench_reg.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench-attacks: $(O)/bench/bench_attacks.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench-autoattack: $(O)/bench/bench_autoattack.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench-fab-projection: $(O)/bench/bench_fab_projection.o $(LIB_A)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# FAB's projection, the sort it replaced against the quickselect (lib/attack/fab_projection.c).
bench-fab-projection: $(O)/bench-fab-projection
	$(Q)$(O)/bench-fab-projection

bench: deps
	$(Q)$(MAKE) --no-print-directory $(O)/bench-core $(O)/bench-reg $(O)/bench-attacks \
		$(O)/bench-autoattack
	$(Q)$(MAKE) --no-print-directory bench-fab-projection
	$(Q)$(PYTHON) bench/bench_core.py --bin $(O)/bench-core
	$(Q)$(PYTHON) bench/bench_reg.py --bin $(O)/bench-reg
	$(Q)$(PYTHON) bench/bench_attacks.py --bin $(O)/bench-attacks
	$(Q)$(PYTHON) bench/bench_autoattack.py --bin $(O)/bench-autoattack --demo $(DEMO_DIR)
	$(Q)$(MAKE) --no-print-directory bench-scaling
	$(Q)$(MAKE) --no-print-directory bench-http

# Thread scaling of every kernel and regularizer at 1, 2, 4, ... threads up to the cores
# (BENCH_MAX_THREADS may go beyond), beside OpenBLAS's own sgemm scaling and torch.
BENCH_MAX_THREADS ?= $(shell nproc)
bench-scaling: deps
	$(Q)$(MAKE) --no-print-directory $(O)/bench-core $(O)/bench-reg
	$(Q)$(PYTHON) bench/bench_scaling.py --core $(O)/bench-core --reg $(O)/bench-reg \
		--max-threads $(BENCH_MAX_THREADS) --torch

# The transport alone: wrk against reluregd and nginx, HTTP+JSON/binary over the library call,
# the Python client against torch double backprop; then the cost model's error per class.
bench-http: deps
	$(Q)$(MAKE) --no-print-directory $(DAEMON) $(O)/bench-reg
	$(Q)$(PYTHON) bench/bench_http.py --daemon $(abspath $(DAEMON)) --bench-reg $(abspath $(O)/bench-reg)
	$(Q)$(PYTHON) bench/bench_cost.py --daemon $(abspath $(DAEMON))

# ---- tools ----
FUZZ_SECONDS ?= 60
# The harnesses link the whole library built by clang with ASan + UBSan + libFuzzer. OpenMP
# pragmas are left out (clang's libomp must not meet the libgomp that OpenBLAS brings), so
# the kernels run serially; BLAS is the same OpenMP OpenBLAS as everywhere else.
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Wno-unknown-pragmas \
               -Werror=implicit-function-declaration -Werror=implicit-int \
               -Ilib -isystem $(OPENBLAS_INC) -D_POSIX_C_SOURCE=200809L
FUZZ_LIBS := -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) -lopenblas -l:libgomp.so.1 -ljansson -lz -lm

FUZZ_SERVER := server/tensor_json.c server/problem.c

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(DEPS_STAMP) $(LIB_SRCS) $(FUZZ_SERVER) $(shell find lib server -name '*.h')
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(FUZZ_SERVER) $(FUZZ_LIBS)

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz: deps
	$(Q)$(MAKE) --no-print-directory $(FUZZ_TARGETS)
	$(Q)$(PYTHON) tests/fuzz/make_model_seeds.py $(B)/fuzz/corpus-fuzz_model
	$(Q)$(PYTHON) tests/fuzz/make_request_seeds.py $(B)/fuzz/corpus-fuzz_request
	$(Q)for f in $(FUZZ_TARGETS); do \
	    n=$$(basename $$f); mkdir -p $(B)/fuzz/corpus-$$n; \
	    cp -n tests/fuzz/seeds/$$n/* $(B)/fuzz/corpus-$$n/ 2>/dev/null || true; \
	    dict=""; [ -f tests/fuzz/$$n.dict ] && dict="-dict=tests/fuzz/$$n.dict"; \
	    echo "== $$n for $(FUZZ_SECONDS) s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -rss_limit_mb=4096 $$dict \
	        -artifact_prefix=$(B)/fuzz/$$n- $(B)/fuzz/corpus-$$n > $(B)/fuzz/$$n.log 2>&1; \
	    rc=$$?; grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|ERROR|SUMMARY' \
	        $(B)/fuzz/$$n.log; \
	    [ $$rc -eq 0 ] || { echo "$$n failed (rc $$rc): see $(B)/fuzz/$$n.log"; exit 1; }; \
	done

FORMAT_DIRS := lib server tests bench clients/c tools
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -name '*.[ch]' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_FILES)
format-check:
	$(Q)clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
