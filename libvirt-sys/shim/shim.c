#include <string.h>
#include <libvirt/libvirt.h>
#include "shim.h"

int kvmsched_shim_cpu_maplen(int cpus) { return VIR_CPU_MAPLEN(cpus); }

void kvmsched_shim_use_cpu(unsigned char *cpumap, int cpu) { VIR_USE_CPU(cpumap, cpu); }

void kvmsched_shim_unuse_cpu(unsigned char *cpumap, int cpu) { VIR_UNUSE_CPU(cpumap, cpu); }

int kvmsched_shim_cpu_used(const unsigned char *cpumap, int cpu) { return VIR_CPU_USED(cpumap, cpu) != 0; }

int kvmsched_shim_cpu_usable(const unsigned char *cpumaps, int maplen, int vcpu, int cpu)
{
    return VIR_CPU_USABLE(cpumaps, maplen, vcpu, cpu) != 0;
}

unsigned char *kvmsched_shim_get_cpumap(unsigned char *cpumaps, int maplen, int vcpu)
{
    return VIR_GET_CPUMAP(cpumaps, maplen, vcpu);
}

void kvmsched_shim_copy_cpumap(const unsigned char *cpumaps, int maplen, int vcpu, unsigned char *cpumap)
{
    VIR_COPY_CPUMAP(cpumaps, maplen, vcpu, cpumap);
}
