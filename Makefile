# cmalab: the two commands a new machine needs are `make lab` (the main job) and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
# The tool itself: `make build` makes the release binary; `make lab` and the tests use the debug build.
CMALAB_DEBUG := .build/debug/cmalab
# The guest agent: fully static, built with Embedded Swift by Scripts/build-agent (--hosted: SwiftPM).
AGENT := .build-agent/release/cmalab-agent
# Images the integration tests boot, in two build lanes: a variant after the image it builds warm from.
TEST_IMAGES_A := cma-6.12 cma-6.12-uart cma-6.12-nodmacma
TEST_IMAGES_B := nocma-6.12 cma-6.1 cma-6.12-arm64
TEST_IMAGES := $(TEST_IMAGES_A) $(TEST_IMAGES_B)
KERNEL_LANES = kernels "$(CMALAB_DEBUG) image build $(TEST_IMAGES_A)" kernels-other "$(CMALAB_DEBUG) image build $(TEST_IMAGES_B)"
# The arm64 guest agent (Scripts/build-agent --arm64).
AGENT_ARM64 := .build-agent/arm64/cmalab-agent

.PHONY: lab lab-arm64 test setup build build-debug agent agent-arm64 images test-images unit clean help fuzz

help:
	@echo "make lab    set up this machine, build cmalab and the default kernel, run every bundled profile"
	@echo "make test   set up this machine, build everything the tests need, run every test"
	@echo "make lab-arm64  the same as make lab for arm64: build cma-6.12-arm64, run Profiles/arm64"

## The main job on the embedded defaults: every bundled profile on its image, and the total time it took.
## It runs the debug build of cmalab, the one the tests use: from an empty .build it takes ~32 s on 2 cores against
## ~141 s for the release build, and cmalab's own CPU over the 20 profiles is 1.9 s against 1.3 s (the guests'
## time is the same). `make build` makes the release binary.
## Once cmalab is built, three lanes run side by side (Scripts/lanes): the cma-6.12 build, its progress shown live,
## whose first ~27 s (unpacking the source, tinyconfig, merging fragments) keep one core busy; the agent (one
## single-threaded swiftc, ~21 s) on the other core meanwhile; and Debian's prebuilt nocma-6.12 (one profile): a
## download, then ~15 s unpacking it.
lab:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory setup && $(MAKE) --no-print-directory build-debug && \
	Scripts/lanes cma-6.12 "$(CMALAB_DEBUG) image build cma-6.12" agent "$(MAKE) --no-print-directory agent" \
	  nocma-6.12 "$(CMALAB_DEBUG) image build nocma-6.12" && \
	$(CMALAB_DEBUG) run --json runs/results.json --junit runs/results.xml --html runs/report.html; \
	status=$$?; echo "lab: done in $$(( $$(date +%s) - start )) s (exit $$status)"; exit $$status

## The arm64 lab: the cross-built cma-6.12-arm64 image, the arm64 agent, and every profile in Profiles/arm64
## (QEMU's `virt` board under TCG, device-tree CMA pools), with its total time.
lab-arm64:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory setup && $(MAKE) --no-print-directory -j2 build-debug agent-arm64 && \
	$(CMALAB_DEBUG) image build cma-6.12-arm64 && \
	$(CMALAB_DEBUG) run Profiles/arm64 --json runs/results-arm64.json --junit runs/results-arm64.xml --html runs/report-arm64.html; \
	status=$$?; echo "lab-arm64: done in $$(( $$(date +%s) - start )) s (exit $$status)"; exit $$status

## Every test: unit tests and the integration tests that boot real kernels. Once cmalab is built, three lanes run
## side by side (Scripts/lanes): the test images in two, and the Swift test build, both agents and 30 s of fuzzing
## in the third. Each leaves a core idle part of the time (a kernel build while it unpacks, configures and links;
## swiftc on one module; the fuzzer), which the others fill.
test: setup build-debug
	@Scripts/lanes $(KERNEL_LANES) \
	  swift "$(MAKE) --no-print-directory agent agent-arm64 && $(SWIFT) build --build-tests && $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30"
	$(SWIFT) test --skip-build

setup:
	@Scripts/setup-host

build:
	$(SWIFT) build -c release --product cmalab

## The debug build `make lab` runs (and `swift build --build-tests` makes as well).
build-debug:
	$(SWIFT) build --product cmalab

agent:
	@Scripts/build-agent

agent-arm64:
	@Scripts/build-agent --arm64

## The images the tests boot (make test builds them itself).
test-images: build-debug
	@Scripts/lanes $(KERNEL_LANES)

## Unit tests only (no kernels): fast.
unit:
	$(SWIFT) test --skip IntegrationTests

clean:
	rm -rf .build .build-agent

## Fuzz the parsers (kernel log, meminfo, cma= family, profiles, matrices, protocol frames, .config), results
## files through `report html`'s page, and the agent client's frame handling (AgentInbox) with libFuzzer for
## FUZZ_SECONDS (default 10 minutes). New crashes are written to .build-fuzz/crash-*; add
## each to Fuzz/corpus/ (it is replayed on every run) and fix the parser.
FUZZ_SECONDS ?= 600
FUZZ := .build-fuzz/debug/cmalab-fuzz
fuzz:
	@set -o pipefail; $(SWIFT) build --scratch-path .build-fuzz --product cmalab-fuzz -Xswiftc -sanitize=fuzzer,address \
		-Xswiftc -DFUZZING -Xswiftc -parse-as-library 2>&1 | grep -v "Cannot export local symbol"
	@mkdir -p .build-fuzz/corpus
	$(FUZZ) -runs=0 Fuzz/corpus
	$(FUZZ) -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1 \
		-artifact_prefix=.build-fuzz/ .build-fuzz/corpus Fuzz/corpus
