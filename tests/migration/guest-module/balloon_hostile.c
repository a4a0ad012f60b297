// SPDX-License-Identifier: GPL-2.0
/*
 * balloon_hostile: a test-only virtio balloon driver that answers free page
 * hinting the way a hostile or broken guest would, so that the tests can
 * check that the host acknowledges, ignores and counts bad input, and never
 * skips a page the guest did not hint whole.
 *
 * For every new command ID it does what mode= says:
 *   mute   nothing: the host's head start must end on its own
 *   bad    a command ID of the wrong size, a hint before the ID, then the
 *          ID and hints that are unaligned, partial, on the read-only BIOS,
 *          on the option ROM shadow, on the legacy VGA window, outside RAM,
 *          a stale ID, overlapping hints of its own donor block, then it
 *          writes a pattern into the donor and sends STOP
 *   flood  the ID, then flood= one-page hints of the donor block, and STOP
 *   break  the ID, then a zero-length buffer (QEMU's virtqueue code marks
 *          the device broken; the migration must go on without hinting)
 *   late   the ID, STOP, then a hint of the canary block: a hint that
 *          arrives after its round stopped, of memory in use
 *
 * The canary block holds a pattern and is only ever named by invalid
 * hints; a host that applied one of them would not send it, and the
 * destination finds it changed (canary_bad in debugfs). The donor block is
 * the driver's own and unused: hinting it is legitimate, and in mode bad
 * the driver writes it after the host handed back its hints; a host that
 * let a hint hide that write leaves the destination an older pattern
 * (donor_bad).
 */
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/version.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/workqueue.h>

#define CANARY_ORDER	9
#define DONOR_ORDER	10
#define USED_TIMEOUT	(5 * HZ)
/* Far beyond the RAM of any test guest, below the 40-bit physical limit */
#define OUTSIDE_RAM	(256ULL << 30)
#define BIOS_ROM	0xf0000		/* shadowed BIOS, read-only after boot */
#define OPTION_ROM	0xc0000		/* option ROM shadow, writable RAM */
#define VGA_WINDOW	0xa0000		/* MMIO with a VGA device, else RAM */

static char *mode = "bad";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "mute, bad, flood, break or late");
static unsigned int flood = 100000;
module_param(flood, uint, 0444);
MODULE_PARM_DESC(flood, "one-page hints per round in mode=flood");

struct hostile {
	struct virtio_device *vdev;
	struct virtqueue *vq;		/* free page queue */
	struct work_struct work;	/* one round at a time */
	struct completion used;		/* the device used a buffer */
	struct page *canary;
	struct page *donor;
	u32 last_cmd_id;
	__virtio32 id_buf;		/* device-readable command ID */
	u8 long_id_buf[8];		/* a command ID of the wrong size */
	/* written by the work item only, read by debugfs */
	u64 rounds;
	u64 buffers;
	u64 timeouts;
	bool donor_written;		/* mode bad: donor holds a pattern */
	struct dentry *debugfs;
};

static u64 pattern_word(struct page *page, unsigned int i, u64 salt)
{
	return (page_to_pfn(page) << 16) ^ i ^ salt ^ 0xc0ffee5eedULL;
}

static void pattern_fill(struct page *block, unsigned int order, u64 salt)
{
	unsigned int p, i;

	for (p = 0; p < 1 << order; p++) {
		u64 *words = page_address(block + p);

		for (i = 0; i < PAGE_SIZE / sizeof(u64); i++)
			words[i] = pattern_word(block + p, i, salt);
	}
}

/* Pages of @block that do not hold the pattern pattern_fill() wrote. */
static unsigned int pattern_bad(struct page *block, unsigned int order,
				u64 salt)
{
	unsigned int p, i, bad = 0;

	for (p = 0; p < 1 << order; p++) {
		u64 *words = page_address(block + p);

		for (i = 0; i < PAGE_SIZE / sizeof(u64); i++) {
			if (words[i] != pattern_word(block + p, i, salt)) {
				bad++;
				break;
			}
		}
	}
	return bad;
}

static void hostile_used(struct virtqueue *vq)
{
	struct hostile *h = vq->vdev->priv;

	complete(&h->used);
}

/*
 * Posts SG COUNT times, keeping the queue full, and waits until the device
 * used every buffer. Stops at the first timeout: the device is broken.
 */
static int send(struct hostile *h, struct scatterlist *sg, bool device_reads,
		unsigned int count)
{
	unsigned int inflight = 0, len;
	int err;

	while (count || inflight) {
		for (; count; count--, inflight++) {
			if (device_reads)
				err = virtqueue_add_outbuf(h->vq, sg, 1, h,
							   GFP_KERNEL);
			else
				err = virtqueue_add_inbuf(h->vq, sg, 1, h,
							  GFP_KERNEL);
			if (err == -ENOSPC)
				break;
			if (err)
				return err;
			h->buffers++;
		}
		reinit_completion(&h->used);
		virtqueue_kick(h->vq);
		while (virtqueue_get_buf(h->vq, &len))
			inflight--;
		if (inflight &&
		    !wait_for_completion_timeout(&h->used, USED_TIMEOUT)) {
			h->timeouts++;
			return -ETIMEDOUT;
		}
	}
	return 0;
}

static int send_id(struct hostile *h, u32 cmd_id)
{
	struct scatterlist sg;

	h->id_buf = cpu_to_virtio32(h->vdev, cmd_id);
	sg_init_one(&sg, &h->id_buf, sizeof(h->id_buf));
	return send(h, &sg, true, 1);
}

/* A hint of [PHYS, +LEN), which need not be RAM, nor page aligned. */
static int send_range(struct hostile *h, phys_addr_t phys, unsigned int len,
		      unsigned int count)
{
	struct scatterlist sg;

	sg_init_table(&sg, 1);
	sg_set_page(&sg, pfn_to_page(PHYS_PFN(phys)), len, offset_in_page(phys));
	return send(h, &sg, false, count);
}

static void round_bad(struct hostile *h, u32 cmd_id)
{
	phys_addr_t canary = page_to_phys(h->canary);
	phys_addr_t donor = page_to_phys(h->donor);
	unsigned long donor_len = PAGE_SIZE << DONOR_ORDER;
	struct scatterlist sg;

	sg_init_one(&sg, h->long_id_buf, sizeof(h->long_id_buf));
	memcpy(h->long_id_buf, &cmd_id, sizeof(cmd_id));
	if (send(h, &sg, true, 1) ||
	    send_range(h, donor, PAGE_SIZE, 1) ||
	    send_id(h, cmd_id) ||
	    send_range(h, canary + 512, 2 * PAGE_SIZE, 1) ||
	    send_range(h, canary + 2 * PAGE_SIZE, 100, 1) ||
	    send_range(h, canary + 4 * PAGE_SIZE - 1, PAGE_SIZE + 2, 1) ||
	    send_range(h, BIOS_ROM, PAGE_SIZE, 1) ||
	    send_range(h, OPTION_ROM, PAGE_SIZE, 1) ||
	    send_range(h, VGA_WINDOW, PAGE_SIZE, 1) ||
	    send_range(h, OUTSIDE_RAM, PAGE_SIZE, 1) ||
	    send_id(h, cmd_id - 1) ||
	    send_range(h, donor, donor_len / 2, 2) ||
	    send_range(h, donor + donor_len / 4, donor_len / 2, 1) ||
	    send_range(h, donor, donor_len, 1))
		return;
	/* Written after its hints were handed back: the host must send it. */
	pattern_fill(h->donor, DONOR_ORDER, h->rounds);
	h->donor_written = true;
	send_id(h, VIRTIO_BALLOON_CMD_ID_STOP);
}

static void round_late(struct hostile *h, u32 cmd_id)
{
	unsigned long canary_len = PAGE_SIZE << CANARY_ORDER;

	if (!send_id(h, cmd_id) && !send_id(h, VIRTIO_BALLOON_CMD_ID_STOP))
		send_range(h, page_to_phys(h->canary), canary_len, 1);
}

static void hostile_work(struct work_struct *work)
{
	struct hostile *h = container_of(work, struct hostile, work);
	struct scatterlist sg;
	u32 cmd_id;

	virtio_cread_le(h->vdev, struct virtio_balloon_config,
			free_page_hint_cmd_id, &cmd_id);
	if (cmd_id == h->last_cmd_id || cmd_id == VIRTIO_BALLOON_CMD_ID_STOP ||
	    cmd_id == VIRTIO_BALLOON_CMD_ID_DONE)
		return;
	h->last_cmd_id = cmd_id;
	h->rounds++;
	if (!strcmp(mode, "bad")) {
		round_bad(h, cmd_id);
	} else if (!strcmp(mode, "flood")) {
		if (!send_id(h, cmd_id) &&
		    !send_range(h, page_to_phys(h->donor), PAGE_SIZE, flood))
			send_id(h, VIRTIO_BALLOON_CMD_ID_STOP);
	} else if (!strcmp(mode, "late")) {
		round_late(h, cmd_id);
	} else if (!strcmp(mode, "break")) {
		if (!send_id(h, cmd_id)) {
			sg_init_one(&sg, page_address(h->donor), 0);
			send(h, &sg, false, 1);
		}
	}
}

static void hostile_config_changed(struct virtio_device *vdev)
{
	struct hostile *h = vdev->priv;

	queue_work(system_unbound_wq, &h->work);
}

static int hostile_stats_show(struct seq_file *m, void *unused)
{
	struct hostile *h = m->private;

	seq_printf(m, "rounds %llu\n", h->rounds);
	seq_printf(m, "buffers %llu\n", h->buffers);
	seq_printf(m, "timeouts %llu\n", h->timeouts);
	seq_printf(m, "canary_bad %u\n", pattern_bad(h->canary, CANARY_ORDER, 0));
	seq_printf(m, "donor_bad %u\n", h->donor_written ?
		   pattern_bad(h->donor, DONOR_ORDER, h->rounds) : 0);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hostile_stats);

/* The balloon's queues in spec order; only the free page queue is used. */
static int find_vqs(struct virtio_device *vdev, struct virtqueue **vqs)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	struct virtqueue_info info[] = {
		{ "inflate" }, { "deflate" }, { "stats" },
		{ "free_page", hostile_used },
	};

	return virtio_find_vqs(vdev, ARRAY_SIZE(info), vqs, info, NULL);
#else
	static const char * const names[] = {
		"inflate", "deflate", "stats", "free_page"
	};
	vq_callback_t *callbacks[] = { NULL, NULL, NULL, hostile_used };

	return virtio_find_vqs(vdev, ARRAY_SIZE(names), vqs, callbacks, names,
			       NULL);
#endif
}

static int hostile_probe(struct virtio_device *vdev)
{
	struct virtqueue *vqs[4];
	struct hostile *h;
	int err = -ENOMEM;

	if (!virtio_has_feature(vdev, VIRTIO_BALLOON_F_FREE_PAGE_HINT) ||
	    !virtio_has_feature(vdev, VIRTIO_BALLOON_F_STATS_VQ))
		return -ENODEV;
	h = kzalloc(sizeof(*h), GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	h->vdev = vdev;
	vdev->priv = h;
	INIT_WORK(&h->work, hostile_work);
	init_completion(&h->used);
	h->canary = alloc_pages(GFP_KERNEL, CANARY_ORDER);
	h->donor = alloc_pages(GFP_KERNEL, DONOR_ORDER);
	if (!h->canary || !h->donor)
		goto err_pages;
	pattern_fill(h->canary, CANARY_ORDER, 0);
	err = find_vqs(vdev, vqs);
	if (err)
		goto err_pages;
	h->vq = vqs[3];
	h->debugfs = debugfs_create_dir("balloon_hostile", NULL);
	debugfs_create_file("stats", 0444, h->debugfs, h, &hostile_stats_fops);
	virtio_device_ready(vdev);
	hostile_config_changed(vdev);
	return 0;

err_pages:
	if (h->canary)
		__free_pages(h->canary, CANARY_ORDER);
	if (h->donor)
		__free_pages(h->donor, DONOR_ORDER);
	kfree(h);
	return err;
}

static void hostile_remove(struct virtio_device *vdev)
{
	struct hostile *h = vdev->priv;

	debugfs_remove_recursive(h->debugfs);
	virtio_reset_device(vdev);
	cancel_work_sync(&h->work);
	vdev->config->del_vqs(vdev);
	__free_pages(h->canary, CANARY_ORDER);
	__free_pages(h->donor, DONOR_ORDER);
	kfree(h);
}

static const struct virtio_device_id id_table[] = {
	{ VIRTIO_ID_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static unsigned int features[] = {
	VIRTIO_BALLOON_F_STATS_VQ,
	VIRTIO_BALLOON_F_FREE_PAGE_HINT,
};

static struct virtio_driver hostile_driver = {
	.feature_table = features,
	.feature_table_size = ARRAY_SIZE(features),
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = id_table,
	.probe = hostile_probe,
	.remove = hostile_remove,
	.config_changed = hostile_config_changed,
};

module_virtio_driver(hostile_driver);
MODULE_DEVICE_TABLE(virtio, id_table);
MODULE_DESCRIPTION("Test-only virtio balloon driver that sends bad free page hints");
MODULE_LICENSE("GPL");
