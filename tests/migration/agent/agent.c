// SPDX-License-Identifier: GPL-2.0
/*
 * agent.c - freehint guest agent for the migration tests.
 *
 * Usage: agent /dev/ttyS1
 *
 * Speaks a line protocol on the tty (raw, 115200). On start it prints
 * "@@ready <uname release>". A request is one line "<id> <cmd> [args...]";
 * the reply is zero or more output lines, then exactly one "@@end <id> ok"
 * or "@@end <id> err <message>". Commands:
 *
 *   ping                 no output
 *   fill MIB             dirty MIB MiB with random data, then free it
 *   zeroed MIB           map MIB MiB of fresh memory, count non-zero pages
 *   hold MIB|0           keep MIB MiB of random data mapped (0: free it)
 *   write PATH TEXT      write TEXT and a newline to PATH
 *   resident MIB SEED [sieve [KIB]]  keep MIB MiB mapped, words a function
 *                        of SEED; sieve: a freed hole of KIB KiB (default
 *                        2048) after every KIB KiB of the pattern
 *   check                verify the resident region, print a checksum
 *   rewrite              write the resident region again (same contents)
 *   cat PATH             print a file verbatim (the first match of a glob)
 *   dmesg                print the kernel log buffer
 *   churn start MIB [PCT]  one memory-churning child per online CPU;
 *                        PCT% of its steps rewrite a live block in place
 *                        (default 25), the others free and renew one
 *   churn status|stop    report the counters / stop, final verify, report
 *   sync                 sync and drop the page cache
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#define MAX_LINE	4096
#define MAX_ARGS	8
#define MAX_MIB		(1ULL << 20)
#define SZ_4K		(4UL << 10)
#define SZ_2M		(2UL << 20)
#define GOLDEN		0x9e3779b97f4a7c15ULL
#define PROT_RW		(PROT_READ | PROT_WRITE)
#define MAP_ANON_PRIV	(MAP_PRIVATE | MAP_ANONYMOUS)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23	/* Linux 5.14 */
#endif
#define SYSLOG_ACTION_READ_ALL		3
#define SYSLOG_ACTION_SIZE_BUFFER	10

struct churn_ctr {
	uint64_t iterations, bad, verified, verified_bytes;
};

struct block {
	uint64_t *addr;
	size_t len;
	uint64_t version;
};

static int tty_fd = -1;
static char out_buf[8192], out_last = '\n', err_buf[256];
static size_t out_len, page_sz;

static uint64_t *res_map, res_seed;
static size_t res_len;
static size_t res_hole;		/* 0, or every other res_hole bytes are a hole */
static uint64_t *hold_map;	/* "hold": filled memory kept until hold 0 */
static size_t hold_len;

static struct churn_ctr *ctr;	/* MAP_SHARED, survives churn stop */
static pid_t *churn_pids;
static int churn_ncpu, churn_died, churn_on;
static unsigned int churn_rewrite_pct;	/* set before fork, read by children */
static volatile sig_atomic_t child_stop;
static const size_t blk_sizes[] = { 4UL << 10, 64UL << 10, 2UL << 20,
				    4UL << 20 };

/* ---- output ---- */

static void out_flush(void)
{
	char *p = out_buf;
	ssize_t n;

	while (out_len) {
		n = write(tty_fd, p, out_len);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			_exit(1);	/* tty gone; children get PDEATHSIG */
		if (n > 0) {
			p += n;
			out_len -= n;
		}
	}
}

static void out_write(const char *p, size_t len)
{
	size_t n;

	if (len)
		out_last = p[len - 1];
	while (len) {
		if (out_len == sizeof(out_buf))
			out_flush();
		n = sizeof(out_buf) - out_len < len ?
		    sizeof(out_buf) - out_len : len;
		memcpy(out_buf + out_len, p, n);
		out_len += n;
		p += n;
		len -= n;
	}
}

static void __attribute__((format(printf, 1, 2)))
out_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	if (n > 0)
		out_write(buf, n);
}

static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- data patterns ---- */

static inline uint64_t mix64(uint64_t x)	/* splitmix64 */
{
	x += GOLDEN;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Word @i of a page/block keyed by @base: cheap, distinct, never zero. */
static inline uint64_t word_val(uint64_t base, uint64_t i)
{
	uint64_t x = base ^ (i * GOLDEN);

	x = (x ^ (x >> 29)) * 0xd6e8feb86659fd93ULL;
	return (x ^ (x >> 32)) | 1;
}

static void fill_words(uint64_t *p, size_t n, uint64_t base)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = word_val(base, i);
}

/* Returns non-zero if any word differs; folds the words into *cs. */
static int verify_words(const uint64_t *p, size_t n, uint64_t base,
			uint64_t *cs)
{
	uint64_t sum = *cs, diff = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		diff |= p[i] ^ word_val(base, i);
		sum = ((sum << 7) | (sum >> 57)) ^ p[i];
	}
	*cs = sum;
	return diff != 0;
}

static inline uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t seed_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return mix64(ts.tv_sec * 1000000000ULL + ts.tv_nsec +
		     ((uint64_t)getpid() << 40)) | 1;
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, base);
	return (errno || *end) ? -1 : 0;
}

static int parse_mib(const char *s, uint64_t *mib)
{
	if (parse_u64(s, 10, mib) || !*mib || *mib > MAX_MIB)
		return fail("bad MIB '%s' (want 1..%llu)", s, MAX_MIB);
	return 0;
}

/* ---- simple commands ---- */

static int cmd_ping(char **argv)
{
	(void)argv;
	return 0;
}

/* mmap @len bytes; blocks of 2 MiB and more are 2 MiB aligned (THP). */
static void *map_block(size_t len)
{
	size_t extra = len >= SZ_2M ? SZ_2M : 0, off;
	char *p = mmap(NULL, len + extra, PROT_RW, MAP_ANON_PRIV, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	off = extra ? -(uintptr_t)p & (SZ_2M - 1) : 0;
	if (off)
		munmap(p, off);
	if (extra - off)
		munmap(p + off + len, extra - off);
	return p + off;
}

/* MIB of fresh memory filled with random words; MAP_FAILED on error. */
static uint64_t *map_random(uint64_t mib)
{
	uint64_t s = seed_now(), *p;
	size_t i;

	p = mmap(NULL, mib << 20, PROT_RW, MAP_ANON_PRIV, -1, 0);
	if (p == MAP_FAILED)
		return p;
	for (i = 0; i < (mib << 20) / 8; i++)
		p[i] = xorshift64(&s);
	return p;
}

static int cmd_fill(char **argv)
{
	uint64_t mib, *p;

	if (parse_mib(argv[0], &mib))
		return -1;
	p = map_random(mib);
	if (p == MAP_FAILED)
		return fail("mmap %" PRIu64 " MiB: %s", mib, strerror(errno));
	munmap(p, mib << 20);
	out_printf("filled mib=%" PRIu64 "\n", mib);
	return 0;
}

static int cmd_hold(char **argv)
{
	uint64_t mib = 0, *p = NULL;

	if (strcmp(argv[0], "0") && parse_mib(argv[0], &mib))
		return -1;
	if (mib) {
		p = map_random(mib);
		if (p == MAP_FAILED)
			return fail("mmap %" PRIu64 " MiB: %s", mib, strerror(errno));
	}
	if (hold_map)
		munmap(hold_map, hold_len);
	hold_map = p;
	hold_len = mib << 20;
	out_printf("held mib=%" PRIu64 "\n", mib);
	return 0;
}

/* The seed of page PG of the resident pattern of SEED. */
static uint64_t resident_page_seed(uint64_t seed, size_t pg)
{
	return mix64(seed ^ ((uint64_t)pg << 20));
}

/* Whether page PG of the resident region holds the pattern (not a hole). */
static int resident_page(size_t pg)
{
	return !res_hole || !(pg * page_sz / res_hole % 2);
}

/* Write the resident pattern of SEED over LEN bytes at P; returns pages. */
static size_t fill_resident(uint64_t *p, size_t len, uint64_t seed)
{
	size_t wpp = page_sz / 8, pg, n = 0;

	for (pg = 0; pg < len / page_sz; pg++) {
		if (!resident_page(pg))
			continue;
		fill_words(p + pg * wpp, wpp, resident_page_seed(seed, pg));
		n++;
	}
	return n;
}

/*
 * The resident region of MIB with a HOLE-byte hole after every HOLE bytes:
 * the holes are written and unmapped, so free blocks of non-zero memory lie
 * between the pattern's, and a hint that reaches past its block lands in
 * the pattern. Holes of 2 MiB are backed by huge pages, smaller ones by
 * base pages, so each hole is freed when it is unmapped.
 */
static uint64_t *map_sieve(uint64_t mib, uint64_t seed, size_t hole)
{
	size_t len = mib << 21, off;
	uint64_t *p = map_block(len);

	if (!p)
		return MAP_FAILED;
	madvise(p, len, hole == SZ_2M ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	res_hole = 0;
	fill_resident(p, len, seed);
	res_hole = hole;
	for (off = hole; off < len; off += 2 * hole)
		munmap((char *)p + off, hole);
	return p;
}

/* The hole size of "sieve [KIB]" at ARGV (NULL: no sieve); 0 if bad. */
static size_t parse_sieve(char **argv)
{
	uint64_t kib = 2048;

	if (strcmp(argv[0], "sieve") ||
	    (argv[1] && parse_u64(argv[1], 10, &kib)))
		return 0;
	if (kib < page_sz >> 10 || kib > 2048 || (kib & (kib - 1)))
		return 0;
	return kib << 10;
}

static int cmd_resident(char **argv)
{
	size_t pages, hole = 0;
	uint64_t mib, seed, *p;

	if (parse_mib(argv[0], &mib))
		return -1;
	if (parse_u64(argv[1], 0, &seed))
		return fail("bad SEED '%s'", argv[1]);
	if (argv[2]) {
		hole = parse_sieve(argv + 2);
		if (!hole || mib % 2)
			return fail("bad sieve (want an even MIB, KIB a power of 2 from the page size to 2048)");
	}
	if (res_map)
		munmap(res_map, res_len);
	res_map = NULL;
	res_len = mib << (hole ? 21 : 20);
	if (hole) {
		p = map_sieve(mib, seed, hole);
	} else {
		res_hole = 0;
		p = mmap(NULL, res_len, PROT_RW, MAP_ANON_PRIV, -1, 0);
	}
	if (p == MAP_FAILED)
		return fail("mmap %" PRIu64 " MiB: %s", mib, strerror(errno));
	pages = hole ? res_len / page_sz / 2 : fill_resident(p, res_len, seed);
	res_map = p;
	res_seed = seed;
	out_printf("resident mib=%" PRIu64 " pages=%zu\n", mib, pages);
	return 0;
}

/* Write the resident region again with its own pattern: dirty, unchanged. */
static int cmd_rewrite(char **argv)
{
	(void)argv;
	if (!res_map)
		return fail("no resident region");
	out_printf("rewrote pages=%zu\n", fill_resident(res_map, res_len, res_seed));
	return 0;
}

static int cmd_check(char **argv)
{
	size_t wpp = page_sz / 8, pg, npages = 0, bad = 0;
	long long first_bad = -1;
	uint64_t cs = 0;

	(void)argv;
	if (!res_map)
		return fail("no resident region");
	for (pg = 0; pg < res_len / page_sz; pg++) {
		if (!resident_page(pg))
			continue;
		npages++;
		if (verify_words(res_map + pg * wpp, wpp,
				 resident_page_seed(res_seed, pg), &cs) && !bad++)
			first_bad = pg;
	}
	out_printf("check pages=%zu bad=%zu first_bad=%lld checksum=%016"
		   PRIx64 "\n", npages, bad, first_bad, cs);
	return 0;
}

/* Map MIB of fresh anonymous memory and count the pages that are not zero. */
static int cmd_zeroed(char **argv)
{
	size_t wpp = page_sz / 8, pg, i, nonzero = 0;
	uint64_t mib, *p;

	if (parse_mib(argv[0], &mib))
		return -1;
	p = mmap(NULL, mib << 20, PROT_RW, MAP_ANON_PRIV, -1, 0);
	if (p == MAP_FAILED)
		return fail("mmap %" PRIu64 " MiB: %s", mib, strerror(errno));
	/*
	 * Base pages, allocated by write faults that write nothing: a huge page
	 * would be cleared on every fault, whatever the allocator promises.
	 */
	if (madvise(p, mib << 20, MADV_NOHUGEPAGE) ||
	    madvise(p, mib << 20, MADV_POPULATE_WRITE)) {
		munmap(p, mib << 20);
		return fail("madvise: %s", strerror(errno));
	}
	for (pg = 0; pg < (mib << 20) / page_sz; pg++) {
		for (i = 0; i < wpp && !p[pg * wpp + i]; i++)
			;
		nonzero += i < wpp;
	}
	munmap(p, mib << 20);
	out_printf("zeroed pages=%zu nonzero=%zu\n", pg, nonzero);
	return 0;
}

/* write PATH TEXT: write TEXT and a newline to PATH (sysfs, procfs) */
static int cmd_write(char **argv)
{
	char text[4096];
	int len = snprintf(text, sizeof(text), "%s\n", argv[1]), fd;
	ssize_t n;

	if (len >= (int)sizeof(text))
		return fail("text too long");
	fd = open(argv[0], O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open %s: %s", argv[0], strerror(errno));
	n = write(fd, text, len);
	close(fd);
	if (n != len)
		return fail("write %s: %s", argv[0], n < 0 ? strerror(errno) : "short write");
	return 0;
}

/* cat PATH: the first match of PATH, which may be a glob pattern */
static int cmd_cat(char **argv)
{
	char buf[65536];
	glob_t g;
	ssize_t n;
	int fd;

	if (glob(argv[0], 0, NULL, &g))
		return fail("no such file: %s", argv[0]);
	fd = open(g.gl_pathv[0], O_RDONLY | O_CLOEXEC);
	globfree(&g);
	if (fd < 0)
		return fail("open %s: %s", argv[0], strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n > 0)
			out_write(buf, n);
		else if (errno != EINTR)
			break;
	}
	if (n)
		fail("read %s: %s", argv[0], strerror(errno));
	close(fd);
	return n ? -1 : 0;
}

static int cmd_dmesg(char **argv)
{
	int size = klogctl(SYSLOG_ACTION_SIZE_BUFFER, NULL, 0), n;
	char *buf;

	(void)argv;
	buf = malloc(size > 0 ? size : (size = 1 << 20));
	if (!buf)
		return fail("out of memory");
	n = klogctl(SYSLOG_ACTION_READ_ALL, buf, size);
	if (n >= 0)
		out_write(buf, n);
	free(buf);
	return n < 0 ? fail("klogctl: %s", strerror(errno)) : 0;
}

static int cmd_sync(char **argv)
{
	int fd;

	(void)argv;
	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = write(fd, "3\n", 2);	/* best effort */

		(void)r;
		close(fd);
	}
	return 0;
}

/* ---- churn children ---- */

static void child_sigusr1(int sig)
{
	(void)sig;
	child_stop = 1;
}

static uint64_t block_base(int child, size_t id, uint64_t version)
{
	return mix64(mix64(((uint64_t)child << 32) | id) ^ version);
}

/* Split @budget bytes into blocks cycling through blk_sizes; count them. */
static size_t plan_blocks(size_t budget, struct block *blk)
{
	size_t n = 0, k = 0, sz;

	budget = budget < SZ_4K ? SZ_4K : budget;
	while (budget >= SZ_4K) {
		sz = blk_sizes[k++ % 4];
		if (sz > budget)
			continue;
		if (blk)
			blk[n].len = sz;
		n++;
		budget -= sz;
	}
	return n;
}

static void block_write(int child, size_t id, struct block *b)
{
	b->version++;
	fill_words(b->addr, b->len / 8, block_base(child, id, b->version));
}

static void block_verify(int child, size_t id, struct block *b)
{
	uint64_t cs = 0;

	if (!b->addr)
		return;
	if (verify_words(b->addr, b->len / 8,
			 block_base(child, id, b->version), &cs))
		__atomic_add_fetch(&ctr->bad, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&ctr->verified, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&ctr->verified_bytes, b->len, __ATOMIC_RELAXED);
}

/* Free the block's memory and write a fresh mapping in its place. */
static void block_renew(int child, size_t id, struct block *b)
{
	if (b->addr)
		munmap(b->addr, b->len);
	b->addr = map_block(b->len);
	if (b->addr)
		block_write(child, id, b);
	else
		usleep(1000);	/* out of memory: retry on a later pick */
}

static void __attribute__((noreturn))
churn_child(int idx, size_t budget, pid_t parent)
{
	struct sigaction sa = { .sa_handler = child_sigusr1 };
	uint64_t rng = seed_now() ^ ((uint64_t)idx << 17);
	struct block *blk;
	size_t nblk = plan_blocks(budget, NULL), i;
	cpu_set_t set;
	sigset_t mask;

	close(tty_fd);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(3);
	sigaction(SIGUSR1, &sa, NULL);
	CPU_ZERO(&set);
	CPU_SET(idx, &set);	/* online CPUs are 0..ncpu-1 in the guest */
	sched_setaffinity(0, sizeof(set), &set);
	blk = calloc(nblk, sizeof(*blk));
	if (!blk)
		_exit(2);
	plan_blocks(budget, blk);
	for (i = 0; i < nblk; i++)
		block_renew(idx, i, &blk[i]);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);

	while (!child_stop) {
		i = xorshift64(&rng) % nblk;
		block_verify(idx, i, &blk[i]);
		if (xorshift64(&rng) % 100 < churn_rewrite_pct && blk[i].addr)
			block_write(idx, i, &blk[i]);
		else
			block_renew(idx, i, &blk[i]);
		__atomic_add_fetch(&ctr->iterations, 1, __ATOMIC_RELAXED);
	}
	for (i = 0; i < nblk; i++)
		block_verify(idx, i, &blk[i]);
	_exit(0);
}

/* ---- churn parent ---- */

/* Reap child @i (blocking or not); count it if it died abnormally. */
static void churn_reap(int i, int flags)
{
	int st;
	pid_t r;

	if (churn_pids[i] <= 0)
		return;
	do {
		r = waitpid(churn_pids[i], &st, flags);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return;
	if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		churn_died++;
	churn_pids[i] = 0;
}

static void churn_signal_all(int sig)
{
	int i;

	for (i = 0; i < churn_ncpu; i++)
		if (churn_pids[i] > 0)
			kill(churn_pids[i], sig);
}

/* Append the counters (and deaths, if any) and end the line. */
static void churn_report(void)
{
	out_printf(" iterations=%" PRIu64 " bad=%" PRIu64 " verified=%" PRIu64
		   " verified_bytes=%" PRIu64,
		   __atomic_load_n(&ctr->iterations, __ATOMIC_RELAXED),
		   __atomic_load_n(&ctr->bad, __ATOMIC_RELAXED),
		   __atomic_load_n(&ctr->verified, __ATOMIC_RELAXED),
		   __atomic_load_n(&ctr->verified_bytes, __ATOMIC_RELAXED));
	if (churn_died)
		out_printf(" died=%d", churn_died);
	out_printf("\n");
}

static int churn_start(const char *arg, const char *pct_arg)
{
	int i, ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	pid_t pid, self = getpid();
	sigset_t mask, old;
	uint64_t mib, pct;

	if (churn_on)
		return fail("churn already running");
	if (parse_mib(arg, &mib))
		return -1;
	if (!pct_arg)
		churn_rewrite_pct = 25;
	else if (parse_u64(pct_arg, 10, &pct) || pct > 100)
		return fail("bad rewrite percentage '%s' (0-100)", pct_arg);
	else
		churn_rewrite_pct = pct;
	ncpu = ncpu < 1 ? 1 : ncpu;
	free(churn_pids);
	churn_pids = calloc(ncpu, sizeof(*churn_pids));
	if (!churn_pids)
		return fail("out of memory");
	memset(ctr, 0, sizeof(*ctr));
	churn_ncpu = ncpu;
	churn_died = 0;

	/* Children install their SIGUSR1 handler before unblocking it. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, &old);
	out_flush();
	for (i = 0; i < ncpu; i++) {
		pid = fork();
		if (pid == 0)
			churn_child(i, ((mib << 20) / ncpu) & ~(SZ_4K - 1),
				    self);
		if (pid < 0)
			break;
		churn_pids[i] = pid;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (i < ncpu) {
		fail("fork: %s", strerror(errno));
		churn_signal_all(SIGKILL);
		for (i = 0; i < ncpu; i++)
			churn_reap(i, 0);
		return -1;
	}
	churn_on = 1;
	out_printf("churn started cpus=%d mib=%" PRIu64 "\n", ncpu, mib);
	return 0;
}

static int cmd_churn(char **argv)
{
	int i;

	if (!strcmp(argv[0], "start") && argv[1])
		return churn_start(argv[1], argv[2]);
	if (argv[1] || (strcmp(argv[0], "status") && strcmp(argv[0], "stop")))
		return fail("usage: churn start MIB [PCT]|status|stop");
	if (!strcmp(argv[0], "status")) {
		for (i = 0; churn_on && i < churn_ncpu; i++)
			churn_reap(i, WNOHANG);
		out_printf("churn running=%d cpus=%d", churn_on, churn_ncpu);
		churn_report();
		return 0;
	}
	if (!churn_on)
		return fail("churn not running");
	churn_signal_all(SIGUSR1);
	for (i = 0; i < churn_ncpu; i++)
		churn_reap(i, 0);
	churn_on = 0;
	out_printf("churn stopped");
	churn_report();
	return 0;
}

/* ---- dispatch ---- */

struct command {
	const char *name;
	int min_args, max_args;
	int (*fn)(char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{ "ping",	0, 0, cmd_ping,		"ping" },
	{ "fill",	1, 1, cmd_fill,		"fill MIB" },
	{ "zeroed",	1, 1, cmd_zeroed,	"zeroed MIB" },
	{ "hold",	1, 1, cmd_hold,		"hold MIB|0" },
	{ "write",	2, 2, cmd_write,	"write PATH TEXT" },
	{ "resident",	2, 4, cmd_resident,	"resident MIB SEED [sieve [KIB]]" },
	{ "check",	0, 0, cmd_check,	"check" },
	{ "rewrite",	0, 0, cmd_rewrite,	"rewrite" },
	{ "cat",	1, 1, cmd_cat,		"cat PATH|GLOB" },
	{ "dmesg",	0, 0, cmd_dmesg,	"dmesg" },
	{ "churn",	1, 3, cmd_churn,	"churn start MIB [PCT]|status|stop" },
	{ "sync",	0, 0, cmd_sync,		"sync" },
};

static int run_command(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2)
		return fail("missing command");
	for (c = commands; c < commands + sizeof(commands) / sizeof(*c); c++) {
		if (strcmp(argv[1], c->name))
			continue;
		if (argc - 2 < c->min_args || argc - 2 > c->max_args)
			return fail("usage: %s", c->usage);
		return c->fn(argv + 2);
	}
	return fail("unknown command '%s'", argv[1]);
}

static void handle_line(char *line, int too_long)
{
	char *argv[MAX_ARGS + 1], *save, *tok;
	int argc = 0, ret;

	for (tok = strtok_r(line, " \t", &save); tok;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (argc == MAX_ARGS) {
			too_long = 1;
			break;
		}
		argv[argc++] = tok;
	}
	if (!argc)
		return;
	argv[argc] = NULL;
	err_buf[0] = '\0';
	out_last = '\n';
	ret = too_long ? fail("line too long or too many arguments")
		       : run_command(argc, argv);
	if (out_last != '\n')
		out_write("\n", 1);
	if (ret)
		out_printf("@@end %s err %s\n", argv[0],
			   err_buf[0] ? err_buf : "failed");
	else
		out_printf("@@end %s ok\n", argv[0]);
	out_flush();
}

static int open_tty(const char *path)
{
	struct termios t;
	int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		cfsetispeed(&t, B115200);
		cfsetospeed(&t, B115200);
		t.c_cflag = (t.c_cflag | CLOCAL | CREAD) & ~CRTSCTS;
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		tcsetattr(fd, TCSANOW, &t);
		tcflush(fd, TCIFLUSH);
	}
	/* O_NONBLOCK only so that open() does not wait for carrier. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int main(int argc, char **argv)
{
	static char line[MAX_LINE], chunk[4096];
	int too_long = 0;
	size_t len = 0;
	struct utsname u;
	ssize_t n, i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s TTY\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	page_sz = sysconf(_SC_PAGESIZE);
	ctr = mmap(NULL, page_sz, PROT_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	tty_fd = open_tty(argv[1]);
	if (tty_fd < 0 || ctr == MAP_FAILED) {
		perror(argv[1]);
		return 1;
	}
	out_printf("@@ready %s\n", uname(&u) ? "unknown" : u.release);
	out_flush();

	while ((n = read(tty_fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			break;	/* hangup: children get PDEATHSIG */
		for (i = 0; i < n; i++) {
			if (chunk[i] != '\n') {
				if (len < sizeof(line) - 1)
					line[len++] = chunk[i];
				else
					too_long = 1;
				continue;
			}
			while (len && line[len - 1] == '\r')
				len--;
			line[len] = '\0';
			handle_line(line, too_long);
			len = 0;
			too_long = 0;
		}
	}
	return 1;
}
