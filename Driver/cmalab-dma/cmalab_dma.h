/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cmalab_dma: the ioctl interface of cmalab's DMA test driver (/dev/cmalab-dma).
 * The guest agent (Sources/AgentCore/DeviceTools.swift) mirrors these layouts.
 */
#ifndef CMALAB_DMA_H
#define CMALAB_DMA_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* How to allocate. */
#define CMALAB_DMA_COHERENT	0	/* dma_alloc_coherent */
#define CMALAB_DMA_PAGES	1	/* dma_alloc_pages */
#define CMALAB_DMA_NONCOHERENT	2	/* dma_alloc_noncoherent */

struct cmalab_dma_alloc {
	/* in */
	__u64 size;		/* bytes */
	__u32 mask_bits;	/* the test device's DMA mask: 1..64 bits */
	__u32 kind;		/* CMALAB_DMA_* */
	/* out */
	__u64 dma_addr;		/* what the device would use */
	__u64 phys_addr;	/* where the memory is (CPU physical address) */
	__u64 nanoseconds;	/* time spent in the allocation call */
	__u32 id;		/* handle for CMALAB_DMA_IOC_FREE */
	__u32 pad;
};

struct cmalab_dma_pin {
	__u64 addr;		/* user address, page aligned */
	__u64 size;		/* bytes */
	__u64 pinned;		/* out: bytes pinned */
};

#define CMALAB_DMA_IOC_ALLOC	_IOWR('C', 1, struct cmalab_dma_alloc)
/* Frees one allocation by id, or all of them for id 0; returns the number freed. */
#define CMALAB_DMA_IOC_FREE	_IOW('C', 2, __u32)
/* Pins the range with FOLL_LONGTERM until the file is closed. */
#define CMALAB_DMA_IOC_PIN	_IOWR('C', 3, struct cmalab_dma_pin)

#endif
