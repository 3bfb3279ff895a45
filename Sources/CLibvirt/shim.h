// libvirt's C API (Debian: libvirt-dev), for the LabLibvirt target.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
