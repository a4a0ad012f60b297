# SPDX-License-Identifier: GPL-2.0
# freehint: free page hinting for faster live migration.
#   make deps   install Debian packages (root)
#   make        build QEMU, the guest kernel, the initramfs, the stock peers
#   make test   run the test suite
#   make demo   migrate a guest without hinting, with upstream and with freehint hinting

BUILD := build
QEMU := $(BUILD)/qemu/qemu-system-x86_64
KERNEL := $(BUILD)/guest/bzImage
INITRAMFS := $(BUILD)/guest/initramfs.cpio.gz
STOCK_KERNEL := $(BUILD)/stock/vmlinuz
STOCK_INITRAMFS := $(BUILD)/stock/initramfs.cpio.gz
AGENT := $(BUILD)/agent/agent
# Debian's Python, where python3-pytest is installed (not whatever python3
# comes first on PATH).
PYTHON := /usr/bin/python3
PYTEST := $(PYTHON) -m pytest

.PHONY: all deps qemu guest stock versions test soak-tcg demo clean

all: qemu guest stock $(INITRAMFS) $(STOCK_INITRAMFS) versions

deps:
	bash scripts/deps.sh

# The build scripts cache by content hash, so running them is cheap when
# nothing changed; they decide, not make.
qemu:
	bash scripts/build-qemu.sh

guest:
	bash scripts/build-guest.sh

stock:
	bash scripts/fetch-stock-kernel.sh

$(AGENT): tests/migration/agent/agent.c
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Wextra -Werror -o $@ $<

$(INITRAMFS): guest $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh $(BUILD)/guest/modules \
		"$$(sed -n 's/^guest_kernel=//p' $(BUILD)/versions.txt)" $@

$(STOCK_INITRAMFS): stock $(AGENT) tests/migration/initramfs/init scripts/build-initramfs.sh
	bash scripts/build-initramfs.sh "$$(cat $(BUILD)/stock/root)" \
		"$$(cat $(BUILD)/stock/release)" $@

versions: qemu guest stock
	@echo "== versions (build/versions.txt)"
	@sed 's/^/   /' $(BUILD)/versions.txt

test: all
	$(PYTEST) -v -ra -m "not soak" tests/migration

# 20 migrations in a row of a churning 2-vCPU guest, every page compared.
soak-tcg: all
	$(PYTEST) -v -ra -s -m soak tests/migration

demo: all
	$(PYTHON) tests/migration/demo.py

clean:
	rm -rf $(BUILD)
