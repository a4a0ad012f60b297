// SPDX-License-Identifier: GPL-2.0
/*
 * debug_canary: a test-only module that commits one deliberate bug when it
 * loads, to show that the debug guest lane's checkers fire and that the
 * harness sees their reports (tests/migration/test_debug_guest.py). Each
 * bug is one a checker of freehint-debug.config exists to catch:
 *
 *   kasan         read past a slab object (KASAN)
 *   kfence        read a freed object that KFENCE handed out (KFENCE)
 *   lockdep       take two locks in both orders (PROVE_LOCKING)
 *   atomic_sleep  may sleep under a spinlock (DEBUG_ATOMIC_SLEEP)
 *   list          add to a list whose head is corrupt (DEBUG_LIST)
 *   vm            drop a reference to a page that has none (DEBUG_VM)
 *   pagealloc     read a freed page, unseen by KASAN (DEBUG_PAGEALLOC)
 *
 * The module never stays loaded: init returns -ENODEV once the bug is done,
 * so the next bug can be loaded in the same boot. The last two oops.
 */
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/jiffies.h>
#include <linux/kfence.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

static char *fault = "";
module_param(fault, charp, 0444);
MODULE_PARM_DESC(fault, "the bug to commit: kasan, kfence, lockdep, atomic_sleep, list, vm or pagealloc");

/* How long to wait for KFENCE to sample an allocation, in milliseconds. */
#define KFENCE_WAIT_MS	10000

static void slab_out_of_bounds(void)
{
	char *object = kmalloc(16, GFP_KERNEL);
	size_t past = 16;

	if (!object)
		return;
	OPTIMIZER_HIDE_VAR(past);
	pr_info("debug_canary: read %d\n", READ_ONCE(object[past]));
	kfree(object);
}

/* An object from KFENCE's pool, or NULL if none came within the wait. */
static void *kfence_object(void)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(KFENCE_WAIT_MS);
	void *object;

	while (time_before(jiffies, deadline)) {
		object = kmalloc(32, GFP_KERNEL);
		if (!object || is_kfence_address(object))
			return object;
		kfree(object);
		usleep_range(100, 200);
	}
	pr_info("debug_canary: KFENCE handed out no object\n");
	return NULL;
}

static void kfence_use_after_free(void)
{
	char *object = kfence_object();

	if (!object)
		return;
	kfree(object);
	OPTIMIZER_HIDE_VAR(object);
	pr_info("debug_canary: read %d\n", READ_ONCE(object[0]));
}

/* Two locks taken in both orders, one after the other: never a deadlock. */
static DEFINE_SPINLOCK(lock_a);
static DEFINE_SPINLOCK(lock_b);

static void lock_inversion(void)
{
	spin_lock(&lock_a);
	spin_lock(&lock_b);
	spin_unlock(&lock_b);
	spin_unlock(&lock_a);
	spin_lock(&lock_b);
	spin_lock(&lock_a);
	spin_unlock(&lock_a);
	spin_unlock(&lock_b);
}

static void sleep_under_spinlock(void)
{
	spin_lock(&lock_a);
	might_sleep();
	spin_unlock(&lock_a);
}

static void corrupt_list_add(void)
{
	LIST_HEAD(head);
	struct list_head stray, entry;

	head.next = &stray;
	stray.prev = &stray;
	list_add(&entry, &head);
}

static void page_reference_underflow(void)
{
	struct page *page = alloc_page(GFP_KERNEL);

	if (!page)
		return;
	__free_page(page);
	put_page(page);
}

/* KASAN must not see the read: DEBUG_PAGEALLOC alone is to catch it. */
static __no_sanitize_address int read_word(const int *word)
{
	return READ_ONCE(*word);
}

static void freed_page_read(void)
{
	struct page *page = alloc_page(GFP_KERNEL);
	int *word;

	if (!page)
		return;
	word = page_address(page);
	__free_page(page);
	pr_info("debug_canary: read %d\n", read_word(word));
}

static const struct {
	const char *name;
	void (*commit)(void);
} bugs[] = {
	{ "kasan", slab_out_of_bounds },
	{ "kfence", kfence_use_after_free },
	{ "lockdep", lock_inversion },
	{ "atomic_sleep", sleep_under_spinlock },
	{ "list", corrupt_list_add },
	{ "vm", page_reference_underflow },
	{ "pagealloc", freed_page_read },
};

static int __init debug_canary_init(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bugs); i++) {
		if (strcmp(fault, bugs[i].name))
			continue;
		pr_info("debug_canary: committing %s\n", fault);
		bugs[i].commit();
		pr_info("debug_canary: %s done\n", fault);
		return -ENODEV;
	}
	pr_err("debug_canary: unknown fault '%s'\n", fault);
	return -EINVAL;
}
module_init(debug_canary_init);

MODULE_DESCRIPTION("Test only: commit one deliberate bug for the debug guest lane");
MODULE_LICENSE("GPL");
