// SPDX-License-Identifier: GPL-2.0
/*
 * cmalab_dma: cmalab's DMA test driver.
 *
 * It answers the question a platform engineer asks of a cma= setting: will a device with this DMA mask
 * get N bytes of contiguous DMA memory? For each mask it is asked about, it registers a platform device
 * ("cmalab-dma.<bits>") with that coherent and streaming mask, and allocates for it through the DMA API
 * (dma_alloc_coherent, dma_alloc_pages, dma_alloc_noncoherent), the path drivers take, which on a machine
 * without an IOMMU is dma-direct: the default CMA area first, and the buddy allocator when the CMA pages
 * are not reachable with the mask or CMA has none. Allocations are kept until freed by id (or the module
 * is removed), so a profile can hold one across steps.
 *
 * It also pins user memory with FOLL_LONGTERM for as long as the file stays open (CMALAB_DMA_IOC_PIN), for
 * kernels whose gup_test lacks PIN_LONGTERM_TEST_START (before 6.2).
 */
#include <linux/dma-mapping.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "cmalab_dma.h"

/* The physical address of a CPU address the DMA API returned: linear-map or vmalloc-space (remapped). */
static phys_addr_t cmalab_phys(void *cpu_addr)
{
	if (is_vmalloc_addr(cpu_addr))
		return page_to_phys(vmalloc_to_page(cpu_addr)) + offset_in_page(cpu_addr);
	return virt_to_phys(cpu_addr);
}

struct cmalab_allocation {
	struct list_head node;
	u32 id;
	u32 kind;
	struct device *dev;
	size_t size;
	void *cpu_addr;
	struct page *page;
	dma_addr_t dma_addr;
};

struct cmalab_pins {
	struct page **pages;
	long count;
};

static DEFINE_MUTEX(cmalab_lock);
static LIST_HEAD(cmalab_allocations);
static u32 cmalab_next_id = 1;
static struct platform_device *cmalab_devices[65];

/* The test device for a mask, registered on first use. */
static struct device *cmalab_device(u32 bits, int *err)
{
	struct platform_device *pdev = cmalab_devices[bits];

	if (!pdev) {
		pdev = platform_device_register_simple("cmalab-dma", bits, NULL, 0);
		if (IS_ERR(pdev)) {
			*err = PTR_ERR(pdev);
			return NULL;
		}
		*err = dma_coerce_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(bits));
		if (*err) {
			dev_info(&pdev->dev, "cmalab-dma: a %u-bit DMA mask is not supported here (%d)\n", bits, *err);
			platform_device_unregister(pdev);
			return NULL;
		}
		cmalab_devices[bits] = pdev;
	}
	*err = 0;
	return &pdev->dev;
}

static long cmalab_alloc(struct cmalab_dma_alloc __user *uarg)
{
	struct cmalab_dma_alloc req;
	struct cmalab_allocation *a;
	struct device *dev;
	ktime_t start;
	int err;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.mask_bits < 1 || req.mask_bits > 64 || req.kind > CMALAB_DMA_NONCOHERENT ||
	    req.size == 0 || req.size > ((u64)1 << 40))
		return -EINVAL;
	a = kzalloc(sizeof(*a), GFP_KERNEL);
	if (!a)
		return -ENOMEM;
	mutex_lock(&cmalab_lock);
	dev = cmalab_device(req.mask_bits, &err);
	if (!dev)
		goto fail;
	a->dev = dev;
	a->kind = req.kind;
	a->size = req.size;
	start = ktime_get();
	switch (req.kind) {
	/*
	 * A coherent buffer for a device that does not snoop caches (arm64 `virt`'s platform devices) is remapped
	 * uncached into vmalloc space, where virt_to_phys() means nothing: take the physical address of the page
	 * behind the mapping (cmalab_phys).
	 */
	case CMALAB_DMA_COHERENT:
		a->cpu_addr = dma_alloc_coherent(dev, a->size, &a->dma_addr, GFP_KERNEL | __GFP_NOWARN);
		if (a->cpu_addr)
			req.phys_addr = cmalab_phys(a->cpu_addr);
		break;
	case CMALAB_DMA_PAGES:
		a->page = dma_alloc_pages(dev, a->size, &a->dma_addr, DMA_BIDIRECTIONAL, GFP_KERNEL | __GFP_NOWARN);
		if (a->page)
			req.phys_addr = page_to_phys(a->page);
		break;
	case CMALAB_DMA_NONCOHERENT:
		a->cpu_addr = dma_alloc_noncoherent(dev, a->size, &a->dma_addr, DMA_BIDIRECTIONAL, GFP_KERNEL | __GFP_NOWARN);
		if (a->cpu_addr)
			req.phys_addr = cmalab_phys(a->cpu_addr);
		break;
	}
	req.nanoseconds = ktime_to_ns(ktime_sub(ktime_get(), start));
	if (!a->cpu_addr && !a->page) {
		err = -ENOMEM;
		goto fail;
	}
	a->id = cmalab_next_id++;
	list_add_tail(&a->node, &cmalab_allocations);
	mutex_unlock(&cmalab_lock);
	req.id = a->id;
	req.dma_addr = a->dma_addr;
	pr_info("cmalab-dma: %u-bit device: %llu bytes at dma %pad phys %pa (id %u)\n",
		req.mask_bits, req.size, &a->dma_addr, &req.phys_addr, a->id);
	/* The allocation stands even if the answer cannot be copied: free it by id or unload the module. */
	return copy_to_user(uarg, &req, sizeof(req)) ? -EFAULT : 0;
fail:
	mutex_unlock(&cmalab_lock);
	kfree(a);
	return err;
}

static void cmalab_release_allocation(struct cmalab_allocation *a)
{
	switch (a->kind) {
	case CMALAB_DMA_COHERENT:
		dma_free_coherent(a->dev, a->size, a->cpu_addr, a->dma_addr);
		break;
	case CMALAB_DMA_PAGES:
		dma_free_pages(a->dev, a->size, a->page, a->dma_addr, DMA_BIDIRECTIONAL);
		break;
	case CMALAB_DMA_NONCOHERENT:
		dma_free_noncoherent(a->dev, a->size, a->cpu_addr, a->dma_addr, DMA_BIDIRECTIONAL);
		break;
	}
	list_del(&a->node);
	kfree(a);
}

/* Frees the allocation with this id, or every allocation for id 0; returns how many were freed. */
static long cmalab_free(u32 __user *uarg)
{
	struct cmalab_allocation *a, *next;
	long freed = 0;
	u32 id;

	if (get_user(id, uarg))
		return -EFAULT;
	mutex_lock(&cmalab_lock);
	list_for_each_entry_safe(a, next, &cmalab_allocations, node) {
		if (id == 0 || a->id == id) {
			cmalab_release_allocation(a);
			freed++;
		}
	}
	mutex_unlock(&cmalab_lock);
	return freed || id == 0 ? freed : -ENOENT;
}

static void cmalab_unpin(struct cmalab_pins *pins)
{
	if (pins->pages) {
		unpin_user_pages(pins->pages, pins->count);
		kvfree(pins->pages);
	}
	pins->pages = NULL;
	pins->count = 0;
}

static long cmalab_pin(struct file *file, struct cmalab_dma_pin __user *uarg)
{
	struct cmalab_pins *pins = file->private_data;
	struct cmalab_dma_pin req;
	long want, done = 0;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (pins->pages)
		return -EBUSY;
	if (!PAGE_ALIGNED(req.addr) || req.size == 0 || req.size > ((u64)1 << 40))
		return -EINVAL;
	want = req.size >> PAGE_SHIFT;
	pins->pages = kvmalloc_array(want, sizeof(struct page *), GFP_KERNEL);
	if (!pins->pages)
		return -ENOMEM;
	while (done < want) {
		long n = pin_user_pages_fast(req.addr + (done << PAGE_SHIFT), min(want - done, 65536L),
					     FOLL_WRITE | FOLL_LONGTERM, pins->pages + done);
		if (n <= 0) {
			pins->count = done;
			cmalab_unpin(pins);
			return n ? n : -EFAULT;
		}
		done += n;
	}
	pins->count = done;
	req.pinned = (u64)done << PAGE_SHIFT;
	return copy_to_user(uarg, &req, sizeof(req)) ? -EFAULT : 0;
}

static long cmalab_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case CMALAB_DMA_IOC_ALLOC:
		return cmalab_alloc((void __user *)arg);
	case CMALAB_DMA_IOC_FREE:
		return cmalab_free((void __user *)arg);
	case CMALAB_DMA_IOC_PIN:
		return cmalab_pin(file, (void __user *)arg);
	}
	return -ENOTTY;
}

static int cmalab_open(struct inode *inode, struct file *file)
{
	file->private_data = kzalloc(sizeof(struct cmalab_pins), GFP_KERNEL);
	return file->private_data ? 0 : -ENOMEM;
}

static int cmalab_release(struct inode *inode, struct file *file)
{
	cmalab_unpin(file->private_data);
	kfree(file->private_data);
	return 0;
}

static const struct file_operations cmalab_fops = {
	.owner = THIS_MODULE,
	.open = cmalab_open,
	.release = cmalab_release,
	.unlocked_ioctl = cmalab_ioctl,
};

static struct miscdevice cmalab_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cmalab-dma",
	.fops = &cmalab_fops,
};

static int __init cmalab_init(void)
{
	return misc_register(&cmalab_misc);
}

static void __exit cmalab_exit(void)
{
	struct cmalab_allocation *a, *next;
	int i;

	misc_deregister(&cmalab_misc);
	list_for_each_entry_safe(a, next, &cmalab_allocations, node)
		cmalab_release_allocation(a);
	for (i = 0; i < ARRAY_SIZE(cmalab_devices); i++)
		if (cmalab_devices[i])
			platform_device_unregister(cmalab_devices[i]);
}

module_init(cmalab_init);
module_exit(cmalab_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cmalab DMA test driver: DMA API allocations for devices with a given mask, long-term pins");
