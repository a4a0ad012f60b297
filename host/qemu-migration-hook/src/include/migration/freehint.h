/*
 * freehint: the pure logic of the host side of free page hinting
 *
 * The command-ID state machine and the validation and clipping of a hinted
 * range against a RAM block. Plain C with
 * libc only, so that it is unit-tested without QEMU; the balloon device and
 * migration/ram.c call it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_FREEHINT_H
#define MIGRATION_FREEHINT_H

#include <stdbool.h>
#include <stdint.h>

/* Reserved command IDs (virtio spec); rounds use IDs from this one up. */
#define FREEHINT_CMD_ID_STOP    0
#define FREEHINT_CMD_ID_DONE    1
#define FREEHINT_CMD_ID_MIN     0x80000000u

/*
 * Hint round state. The values travel in the migration stream (QEMU's
 * free_page_hint_status, the same since 2018) and must not change.
 */
typedef enum FreeHintState {
    FREEHINT_STOP = 0,          /* round stopped: hints are ignored */
    FREEHINT_REQUESTED = 1,     /* new ID issued, guest has not echoed it */
    FREEHINT_START = 2,         /* guest echoed the ID: hints are applied */
    FREEHINT_DONE = 3,          /* no migration: the guest may reuse all */
} FreeHintState;

typedef enum FreeHintEvent {
    FREEHINT_EV_BEFORE_SYNC,    /* a dirty bitmap sync is about to run */
    FREEHINT_EV_AFTER_SYNC,     /* a dirty bitmap sync has run */
    FREEHINT_EV_END,            /* migration completed, failed or cancelled */
    FREEHINT_EV_ECHO,           /* guest sent the current command ID */
    FREEHINT_EV_STALE_ECHO,     /* guest sent another command ID */
    FREEHINT_EV_GUEST_STOP,     /* guest sent STOP: it has nothing more */
    FREEHINT_EV_HINT,           /* guest sent a hint */
    FREEHINT_EV_RESET,          /* device reset: the guest forgot the round */
    FREEHINT_EV__MAX,
} FreeHintEvent;

/* What the caller does after a transition; may be combined. */
enum {
    FREEHINT_ACT_NEW_CMD_ID = 1 << 0,   /* next ID, then notify the guest */
    FREEHINT_ACT_NOTIFY = 1 << 1,       /* notify the guest of the state */
    FREEHINT_ACT_APPLY_HINT = 1 << 2,   /* clear the hinted pages */
    FREEHINT_ACT_IGNORE_HINT = 1 << 3,  /* count the hint as ignored */
};

typedef struct FreeHintStep {
    FreeHintState state;
    unsigned actions;
} FreeHintStep;

/*
 * Head start: after the first dirty bitmap sync the migration waits, before
 * it sends any RAM, until the guest ends its first round or this many
 * milliseconds pass. A device property sets it, up to the hard bound.
 */
#define FREEHINT_HEAD_START_DEFAULT_MS  1000
#define FREEHINT_HEAD_START_MAX_MS      10000

FreeHintStep freehint_next(FreeHintState state, FreeHintEvent event);
bool freehint_round_open(FreeHintState state);
uint32_t freehint_next_cmd_id(uint32_t cmd_id);
uint32_t freehint_config_cmd_id(FreeHintState state, uint32_t cmd_id);

/*
 * What became of a hinted range, and if nothing was applied, why. The one
 * vocabulary for refusals: the device's checks and ram.c's both answer in
 * it, the trace events print freehint_range_verdict_name().
 */
typedef enum FreeHintRangeVerdict {
    FREEHINT_RANGE_OK,
    FREEHINT_RANGE_CLIPPED,     /* applied where it lies inside the block */
    FREEHINT_RANGE_EMPTY,       /* zero length */
    FREEHINT_RANGE_UNALIGNED,   /* start or length not whole pages */
    FREEHINT_RANGE_WRAPS,       /* start + length overflows */
    FREEHINT_RANGE_OUTSIDE,     /* starts beyond the block's used length */
    FREEHINT_RANGE_NOT_RAM,     /* not writable guest system RAM */
    FREEHINT_RANGE_BELOW_FLOOR, /* starts below FREEHINT_GPA_FLOOR */
    FREEHINT_RANGE_UNTRACKED,   /* RAM the migration does not copy now */
    FREEHINT_RANGE__MAX,
} FreeHintRangeVerdict;

/* What the migration knows of the RAM block a hint lands in. */
typedef struct FreeHintBlock {
    uint64_t used_length_bytes; /* bytes in use; hints are clipped to it */
    bool system_ram;            /* guest system RAM, not ROM or VRAM */
    /*
     * The migration copies the block and has its dirty bitmap: false with
     * no migration running and for blocks it ignores (x-ignore-shared,
     * cpr-transfer, non-migratable RAM).
     */
    bool tracked;
} FreeHintBlock;

typedef struct FreeHintRange {
    uint64_t first_page;        /* page index in the RAM block */
    uint64_t npages;            /* pages to clear; 0 unless OK or CLIPPED */
} FreeHintRange;

FreeHintRangeVerdict freehint_clip_range(uint64_t offset_bytes,
                                         uint64_t len_bytes,
                                         const FreeHintBlock *block,
                                         unsigned page_bits,
                                         FreeHintRange *range);
bool freehint_range_applied(FreeHintRangeVerdict verdict);
const char *freehint_range_verdict_name(FreeHintRangeVerdict verdict);

/*
 * Why a hint buffer was ignored as a whole (nothing of it applied); the
 * device counts each reason, and hint-ignored is their sum.
 */
typedef enum FreeHintIgnored {
    FREEHINT_IGNORED_STALE,     /* outside a started round */
    FREEHINT_IGNORED_INVALID,   /* malformed, or not the guest's own RAM */
    FREEHINT_IGNORED_UNTRACKED, /* on RAM the migration does not copy now */
    FREEHINT_IGNORED__MAX,
} FreeHintIgnored;

FreeHintIgnored freehint_ignored_reason(FreeHintRangeVerdict verdict);

/*
 * Guest-physical memory below 1 MiB is never skipped. Firmware and device
 * models keep state there that the destination reads when it loads the
 * device state: on a PC, kvmvapic's option ROM in the writable shadow at
 * 0xc0000, which failed to load once a guest had hinted it. No guest needs
 * to hint it: Linux on x86 reserves the first MiB.
 */
#define FREEHINT_GPA_FLOOR (UINT64_C(1) << 20)

FreeHintRangeVerdict freehint_check_gpa(uint64_t gpa, uint64_t len);

#endif
