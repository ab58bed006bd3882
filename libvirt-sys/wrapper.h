/* The libvirt API surface kvmsched binds. bindgen reads this file; build.rs
 * allowlists exactly the functions the tool calls. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include "shim/shim.h"
