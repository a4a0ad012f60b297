/*
 * freehint: the command-ID state machine of a free page hint round
 *
 * One transition function decides, for every state and event, the next
 * state and what the caller does; nothing else changes the state.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "migration/freehint.h"

static FreeHintStep step(FreeHintState state, unsigned actions)
{
    return (FreeHintStep) { .state = state, .actions = actions };
}

/* A round is open from a new command ID until STOP, DONE or a reset. */
bool freehint_round_open(FreeHintState state)
{
    return state == FREEHINT_REQUESTED || state == FREEHINT_START;
}

FreeHintStep freehint_next(FreeHintState state, FreeHintEvent event)
{
    switch (event) {
    case FREEHINT_EV_BEFORE_SYNC:
        /*
         * Hints applied after the sync would clear bits the sync just set
         * for pages written since: stop the round first.
         */
        if (freehint_round_open(state)) {
            return step(FREEHINT_STOP, FREEHINT_ACT_NOTIFY);
        }
        return step(state, 0);
    case FREEHINT_EV_AFTER_SYNC:
        /*
         * A new round for the new bitmap. Syncs happen only in a migration,
         * and its first sync, before any RAM is sent, starts the first round.
         */
        return step(FREEHINT_REQUESTED, FREEHINT_ACT_NEW_CMD_ID);
    case FREEHINT_EV_END:
        if (state == FREEHINT_DONE) {
            return step(state, 0);
        }
        return step(FREEHINT_DONE, FREEHINT_ACT_NOTIFY);
    case FREEHINT_EV_ECHO:
        if (state == FREEHINT_REQUESTED) {
            return step(FREEHINT_START, 0);
        }
        return step(state, 0);
    case FREEHINT_EV_STALE_ECHO:
        /* An ID of another round changes nothing: the guest is behind. */
        return step(state, 0);
    case FREEHINT_EV_GUEST_STOP:
        /*
         * The guest hinted all it had. A STOP that reaches a new round
         * ended the one before it and changes nothing.
         */
        if (state == FREEHINT_START) {
            return step(FREEHINT_STOP, 0);
        }
        return step(state, 0);
    case FREEHINT_EV_RESET:
        if (freehint_round_open(state)) {
            return step(FREEHINT_STOP, 0);
        }
        return step(state, 0);
    case FREEHINT_EV_HINT:
        if (state == FREEHINT_START) {
            return step(state, FREEHINT_ACT_APPLY_HINT);
        }
        return step(state, FREEHINT_ACT_IGNORE_HINT);
    case FREEHINT_EV__MAX:
        break;
    }
    return step(state, 0);
}

/* The ID after @cmd_id, skipping the reserved STOP and DONE values. */
uint32_t freehint_next_cmd_id(uint32_t cmd_id)
{
    if (cmd_id < FREEHINT_CMD_ID_MIN || cmd_id == UINT32_MAX) {
        return FREEHINT_CMD_ID_MIN;
    }
    return cmd_id + 1;
}

/*
 * What the config space shows the guest. The ID stays visible for the whole
 * round, so a guest that reads the config for another reason (a balloon
 * resize) does not mistake a running round for STOP.
 */
uint32_t freehint_config_cmd_id(FreeHintState state, uint32_t cmd_id)
{
    switch (state) {
    case FREEHINT_REQUESTED:
    case FREEHINT_START:
        return cmd_id;
    case FREEHINT_STOP:
        return FREEHINT_CMD_ID_STOP;
    case FREEHINT_DONE:
        break;
    }
    return FREEHINT_CMD_ID_DONE;
}
