/* SPDX-License-Identifier: GPL-2.0 */
/*
 * free_page_query: lend whole free blocks to a driver that tells a hypervisor
 * which guest memory is free, without allocating, initialising or writing
 * them.
 *
 * The service is pulled: the driver asks for one block at a time and gives
 * each block back when it is done with it. mm never calls out to the driver.
 * While a block is lent, it is on no free list and nobody but its borrower
 * may touch it; the borrower may link the block's head page through
 * page->lru and must not write the memory.
 */
#ifndef _LINUX_FREE_PAGE_QUERY_H
#define _LINUX_FREE_PAGE_QUERY_H

#include <linux/mmzone.h>

struct page;

/* Largest and smallest order of the blocks lent, largest first. */
#define FREE_PAGE_QUERY_MAX_ORDER	(MAX_ORDER - 1)
#define FREE_PAGE_QUERY_MIN_ORDER	pageblock_order

#ifdef CONFIG_FREE_PAGE_QUERY
struct page *free_page_query_take(unsigned long reserve_pages,
				  unsigned int *order);
void free_page_query_give_back(struct page *block, unsigned int order,
			       bool hint_done);
#else
static inline struct page *free_page_query_take(unsigned long reserve_pages,
						unsigned int *order)
{
	return NULL;
}

static inline void free_page_query_give_back(struct page *block,
					     unsigned int order, bool hint_done)
{
}
#endif

#endif /* _LINUX_FREE_PAGE_QUERY_H */
