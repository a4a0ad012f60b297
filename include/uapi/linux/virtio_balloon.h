/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Virtio memory balloon device: the wire contract between guest driver and
 * host device (virtio specification, "Memory Balloon Device").
 *
 * freehint builds both its guest kernel and its QEMU against this file, and
 * interoperates with guests and hosts built against the upstream header, so
 * every value and layout here is fixed by the specification.
 *
 * This header is BSD-licensed, as upstream keeps the virtio headers, so that
 * any virtual machine monitor or guest, whatever its own licence, can
 * implement the device from these definitions.
 *
 * Copyright (C) 2026 The freehint authors
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are
 * met:
 * 1. Redistributions of source code must retain the above copyright notice,
 *    this list of conditions and the following disclaimer.
 * 2. Redistributions in binary form must reproduce the above copyright
 *    notice, this list of conditions and the following disclaimer in the
 *    documentation and/or other materials provided with the distribution.
 * 3. Neither the name of the copyright holder nor the names of its
 *    contributors may be used to endorse or promote products derived from
 *    this software without specific prior written permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS
 * IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO,
 * THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
 * PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
 * CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
 * EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
 * PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR
 * PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF
 * LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
 * NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS
 * SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 */
#ifndef _LINUX_VIRTIO_BALLOON_H
#define _LINUX_VIRTIO_BALLOON_H
#include <linux/types.h>
#include <linux/virtio_types.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_config.h>

/* Feature bits */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST	0 /* Host told before pages are reused */
#define VIRTIO_BALLOON_F_STATS_VQ	1 /* Memory statistics virtqueue */
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM	2 /* Guest deflates when out of memory */
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT	3 /* Free page hint virtqueue */
#define VIRTIO_BALLOON_F_PAGE_POISON	4 /* poison_val holds the guest's poison */
#define VIRTIO_BALLOON_F_REPORTING	5 /* Free page reporting virtqueue */

/* Page frame numbers on the inflate and deflate queues are 4 KiB units. */
#define VIRTIO_BALLOON_PFN_SHIFT 12

/*
 * Reserved values of free_page_hint_cmd_id. Any other value is a command ID
 * naming a new hinting round.
 */
#define VIRTIO_BALLOON_CMD_ID_STOP	0 /* end the round, keep hinted memory */
#define VIRTIO_BALLOON_CMD_ID_DONE	1 /* hinted memory may be reused */

struct virtio_balloon_config {
	/* Pages the host asks the guest to give up (host writes). */
	__le32 num_pages;
	/* Pages the guest has in the balloon (guest writes). */
	__le32 actual;
	union {
		/* Command ID of the current hinting round (host writes). */
		__le32 free_page_hint_cmd_id;
		/* The same field under its original name, kept for old code. */
		__le32 free_page_report_cmd_id;
	};
	/* Value free pages are filled with, with PAGE_POISON (guest writes). */
	__le32 poison_val;
};

/* Tags of the memory statistics on the stats virtqueue. */
#define VIRTIO_BALLOON_S_SWAP_IN  0   /* Memory swapped in (bytes) */
#define VIRTIO_BALLOON_S_SWAP_OUT 1   /* Memory swapped out (bytes) */
#define VIRTIO_BALLOON_S_MAJFLT   2   /* Major page faults */
#define VIRTIO_BALLOON_S_MINFLT   3   /* Minor page faults */
#define VIRTIO_BALLOON_S_MEMFREE  4   /* Free memory (bytes) */
#define VIRTIO_BALLOON_S_MEMTOT   5   /* Total memory (bytes) */
#define VIRTIO_BALLOON_S_AVAIL    6   /* Available memory, as in /proc/meminfo */
#define VIRTIO_BALLOON_S_CACHES   7   /* Disk caches (bytes) */
#define VIRTIO_BALLOON_S_HTLB_PGALLOC  8  /* Hugetlb page allocations */
#define VIRTIO_BALLOON_S_HTLB_PGFAIL   9  /* Hugetlb page allocation failures */
#define VIRTIO_BALLOON_S_OOM_KILL      10 /* Times the OOM killer ran */
#define VIRTIO_BALLOON_S_ALLOC_STALL   11 /* Allocations that stalled */
#define VIRTIO_BALLOON_S_ASYNC_SCAN    12 /* Memory scanned by kswapd (bytes) */
#define VIRTIO_BALLOON_S_DIRECT_SCAN   13 /* Memory scanned directly (bytes) */
#define VIRTIO_BALLOON_S_ASYNC_RECLAIM 14 /* Memory reclaimed by kswapd (bytes) */
#define VIRTIO_BALLOON_S_DIRECT_RECLAIM 15 /* Memory reclaimed directly (bytes) */
#define VIRTIO_BALLOON_S_NR       16

/* Names of the statistics, indexed by tag, each after a common prefix. */
#define VIRTIO_BALLOON_S_NAMES_WITH_PREFIX(prefix) { \
	prefix "swap-in", \
	prefix "swap-out", \
	prefix "major-faults", \
	prefix "minor-faults", \
	prefix "free-memory", \
	prefix "total-memory", \
	prefix "available-memory", \
	prefix "disk-caches", \
	prefix "hugetlb-allocations", \
	prefix "hugetlb-failures", \
	prefix "oom-kills", \
	prefix "alloc-stalls", \
	prefix "async-scans", \
	prefix "direct-scans", \
	prefix "async-reclaims", \
	prefix "direct-reclaims" \
}

#define VIRTIO_BALLOON_S_NAMES VIRTIO_BALLOON_S_NAMES_WITH_PREFIX("")

/*
 * One statistic on the stats virtqueue. The layout (10 bytes, no padding) is
 * fixed by the specification, hence packed.
 */
struct virtio_balloon_stat {
	__virtio16 tag;
	__virtio64 val;
} __attribute__((packed));

#endif /* _LINUX_VIRTIO_BALLOON_H */
