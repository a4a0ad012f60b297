# SPDX-License-Identifier: GPL-2.0
# freehint: free page hinting for faster live migration.
#   make deps   install Debian packages (root)
#   make        build QEMU, the guest kernels (6.12, 6.1, 6.12 debug), their initramfs, the stock peers
#   make test   run the test suite (the hook's unit tests, then pytest)
#   make fuzz   fuzz the hook's hint validation for FUZZ_SECONDS (default 60)
#   make demo   migrate a guest without hinting, with upstream and with freehint hinting
#   make soak   SOAK_MIGRATIONS (default 1000) oracle-checked migrations of churning,
#               disturbed guests with hinting on (about 55 minutes)
#   make bench  benchmark no hinting, upstream and freehint (BENCH=quick: under 10 min)

BUILD := build
QEMU := $(BUILD)/qemu/qemu-system-x86_64
# The guest kernel lines: 6.12 (what the tests use unless they say
# otherwise) and 6.1 (Debian 12 guests); and the debug lane, 6.12 with
# lockdep, KASAN, KFENCE, DEBUG_VM and DEBUG_PAGEALLOC.
KERNEL := $(BUILD)/guest/bzImage
INITRAMFS := $(BUILD)/guest/initramfs.cpio.gz
INITRAMFS_6_1 := $(BUILD)/guest-6.1/initramfs.cpio.gz
INITRAMFS_DEBUG := $(BUILD)/guest-debug/initramfs.cpio.gz
STOCK_KERNEL := $(BUILD)/stock/vmlinuz
STOCK_INITRAMFS := $(BUILD)/stock/initramfs.cpio.gz
STOCK_INITRAMFS_6_12 := $(BUILD)/stock-6.12/initramfs.cpio.gz
AGENT := $(BUILD)/agent/agent
# Debian's Python, where python3-pytest is installed (not whatever python3
# comes first on PATH).
PYTHON := /usr/bin/python3
PYTEST := $(PYTHON) -m pytest

# The hook's pure logic, built and tested in userspace without QEMU.
HOOK := host/qemu-migration-hook
HOOK_LOGIC := $(HOOK)/src/migration/freehint-round.c $(HOOK)/src/migration/freehint-range.c
HOOK_HEADER := $(HOOK)/src/include/migration/freehint.h
UNIT_TEST := $(BUILD)/unit/test-freehint
FUZZER := $(BUILD)/fuzz/fuzz-freehint
FUZZ_SECONDS := 60

.PHONY: all deps qemu guest guest-6.1 guest-debug stock stock-6.12 versions unit test fuzz soak soak-tcg demo bench clean

all: qemu guest guest-6.1 guest-debug stock stock-6.12 $(INITRAMFS) $(INITRAMFS_6_1) \
	$(INITRAMFS_DEBUG) $(STOCK_INITRAMFS) $(STOCK_INITRAMFS_6_12) versions

deps:
	bash scripts/deps.sh

# The build scripts cache by content hash, so running them is cheap when
# nothing changed; they decide, not make.
qemu:
	bash scripts/build-qemu.sh

guest:
	bash scripts/build-guest.sh 6.12 $(BUILD)/guest

guest-6.1:
	bash scripts/build-guest.sh 6.1 $(BUILD)/guest-6.1

guest-debug:
	bash scripts/build-guest.sh 6.12 $(BUILD)/guest-debug debug

stock:
	bash scripts/fetch-stock-kernel.sh 6.1 $(BUILD)/stock

stock-6.12:
	bash scripts/fetch-stock-kernel.sh 6.12 $(BUILD)/stock-6.12

$(AGENT): tests/migration/agent/agent.c
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

$(INITRAMFS): guest $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh $(BUILD)/guest/modules \
		"$$(sed -n 's/^guest_kernel=//p' $(BUILD)/versions.txt)" $@

$(INITRAMFS_6_1): guest-6.1 $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh $(BUILD)/guest-6.1/modules \
		"$$(sed -n 's/^guest_kernel_6.1=//p' $(BUILD)/versions.txt)" $@

$(INITRAMFS_DEBUG): guest-debug $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh $(BUILD)/guest-debug/modules \
		"$$(sed -n 's/^guest_kernel_6.12-debug=//p' $(BUILD)/versions.txt)" $@

$(STOCK_INITRAMFS): stock $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh "$$(cat $(BUILD)/stock/root)" \
		"$$(cat $(BUILD)/stock/release)" $@

$(STOCK_INITRAMFS_6_12): stock-6.12 $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh "$$(cat $(BUILD)/stock-6.12/root)" \
		"$$(cat $(BUILD)/stock-6.12/release)" $@

versions: qemu guest guest-6.1 guest-debug stock stock-6.12
	@bash scripts/record-peers.sh
	@echo "== versions (build/versions.txt)"
	@sed 's/^/   /' $(BUILD)/versions.txt

$(UNIT_TEST): $(HOOK)/tests/test-freehint.c $(HOOK_LOGIC) $(HOOK_HEADER)
	@mkdir -p $(dir $@)
	gcc -O2 -Wall -Wextra -Werror -I$(HOOK)/src/include $$(pkg-config --cflags glib-2.0) \
		-o $@ $< $(HOOK_LOGIC) $$(pkg-config --libs glib-2.0)

unit: $(UNIT_TEST)
	$(UNIT_TEST)

test: all unit
	$(PYTEST) -v -ra --durations=20 -m "not soak" tests/migration

$(FUZZER): $(HOOK)/tests/fuzz-freehint.c $(HOOK_LOGIC) $(HOOK_HEADER)
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -I$(HOOK)/src/include \
		-o $@ $< $(HOOK_LOGIC)

fuzz: $(FUZZER)
	$(FUZZER) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1

# 20 migrations in a row of a churning 2-vCPU guest, every page compared.
soak-tcg: all
	$(PYTEST) -v -ra -s -m soak tests/migration

demo: all
	$(PYTHON) tests/migration/demo.py

# Our QEMU and the 6.12 guest only (Debian's QEMUs come from make deps).
soak: qemu $(INITRAMFS)
	$(PYTHON) tests/migration/soak.py

# build/bench/results.json, report.md and plots
bench: all
	$(PYTHON) tests/migration/bench.py

clean:
	rm -rf $(BUILD)
