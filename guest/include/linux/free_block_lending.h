/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Free block lending: whole free blocks taken off the free lists for a
 * borrower, such as a driver telling a hypervisor which memory is free,
 * without allocating, initialising or writing them.
 *
 * The borrower pulls: it asks for one block at a time and puts each back
 * when it is done with it; mm never calls the borrower. While a block is
 * lent it is on no free list, counts in its zone's NR_FREE_LENT instead of
 * NR_FREE_PAGES, and nobody but its borrower may touch it. The borrower may
 * use the head page's lru and private fields, which putback_free_block()
 * overwrites, and must not write the block's memory.
 */
#ifndef _LINUX_FREE_BLOCK_LENDING_H
#define _LINUX_FREE_BLOCK_LENDING_H

#include <linux/mmzone.h>

struct page;

/* Smallest and largest order of the blocks lent. */
#define FREE_BLOCK_MIN_ORDER	pageblock_order
#define FREE_BLOCK_MAX_ORDER	MAX_PAGE_ORDER

/**
 * struct free_block_limits - what lending leaves in each zone
 * @reserve_pages: free pages the zone keeps above its high watermark
 * @max_lent_percent: share of the zone's free memory (free and lent pages,
 *	CMA pages not counted) that may be lent at a time, to every borrower
 *	together; 0 lends nothing, 100 or more leaves only the watermark rule
 */
struct free_block_limits {
	unsigned long reserve_pages;
	unsigned int max_lent_percent;
};

/**
 * enum free_block_putback - how a block's contents are settled on putback
 * @FREE_BLOCK_REPAIR: what the pages hold now is what they will hold: pages
 *	that lost what free pages are expected to hold get it written again
 * @FREE_BLOCK_REWRITE: the contents may be stale (they may still change
 *	under the kernel until the pages are written): every page is written
 *
 * Both only matter when page poisoning or init_on_free say what free pages
 * hold; otherwise the contents are left alone.
 */
enum free_block_putback {
	FREE_BLOCK_REPAIR,
	FREE_BLOCK_REWRITE,
};

#ifdef CONFIG_FREE_BLOCK_LENDING
void drain_free_blocks(void);
struct page *isolate_free_block(const struct free_block_limits *limits,
				unsigned int *order);
unsigned long free_block_lendable_pages(const struct free_block_limits *limits);
unsigned long putback_free_block(struct page *block, unsigned int order,
				 enum free_block_putback how);
#else
static inline void drain_free_blocks(void)
{
}

static inline struct page *
isolate_free_block(const struct free_block_limits *limits, unsigned int *order)
{
	return NULL;
}

static inline unsigned long
free_block_lendable_pages(const struct free_block_limits *limits)
{
	return 0;
}

static inline unsigned long putback_free_block(struct page *block,
					       unsigned int order,
					       enum free_block_putback how)
{
	return 0;
}
#endif

#endif /* _LINUX_FREE_BLOCK_LENDING_H */
