/* SPDX-License-Identifier: GPL-2.0 */
/*
 * balloon_hint: the free page hint command path of the virtio balloon
 * (VIRTIO_BALLOON_F_FREE_PAGE_HINT), hinting free blocks mm lends it
 * instead of allocated ones, so no hinted byte is written.
 *
 * virtio_balloon owns the device and its queues and calls in here; these
 * calls are the whole interface.
 */
#ifndef _DRIVERS_VIRTIO_BALLOON_HINT_H
#define _DRIVERS_VIRTIO_BALLOON_HINT_H

struct balloon_hint;
struct virtio_device;
struct virtqueue;

struct balloon_hint *balloon_hint_create(struct virtio_device *vdev,
					 struct virtqueue *vq);
void balloon_hint_config_changed(struct balloon_hint *hint);
void balloon_hint_vq_done(struct balloon_hint *hint);
void balloon_hint_stop(struct balloon_hint *hint);
void balloon_hint_reset(struct balloon_hint *hint, struct virtqueue *vq);
void balloon_hint_destroy(struct balloon_hint *hint);

#endif /* _DRIVERS_VIRTIO_BALLOON_HINT_H */
