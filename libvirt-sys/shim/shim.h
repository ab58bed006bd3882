/* libvirt's cpumap helpers are function-like macros, invisible to bindgen.
 * These functions expose each macro unchanged so Rust can call (and test
 * against) the exact C definition. None allocates or frees anything; each
 * pointer argument must point to enough bytes for the CPU or vCPU named. */
#ifndef KVMSCHED_SHIM_H
#define KVMSCHED_SHIM_H

/** VIR_CPU_MAPLEN(cpus): bytes in a map of `cpus` CPUs. */
int kvmsched_shim_cpu_maplen(int cpus);
/** VIR_USE_CPU(cpumap, cpu): sets CPU `cpu`; `cpumap` needs `cpu / 8 + 1` bytes. */
void kvmsched_shim_use_cpu(unsigned char *cpumap, int cpu);
/** VIR_UNUSE_CPU(cpumap, cpu): clears CPU `cpu`; same bound as use_cpu. */
void kvmsched_shim_unuse_cpu(unsigned char *cpumap, int cpu);
/** VIR_CPU_USED(cpumap, cpu) != 0: whether CPU `cpu` is set; same bound. */
int kvmsched_shim_cpu_used(const unsigned char *cpumap, int cpu);
/** VIR_CPU_USABLE(cpumaps, maplen, vcpu, cpu) != 0: whether vCPU `vcpu` may
 * run on `cpu` in an array of per-vCPU maps of `maplen` bytes each. */
int kvmsched_shim_cpu_usable(const unsigned char *cpumaps, int maplen, int vcpu, int cpu);
/** VIR_GET_CPUMAP(cpumaps, maplen, vcpu): the map of vCPU `vcpu` in such an
 * array (a pointer into it, not a copy). */
unsigned char *kvmsched_shim_get_cpumap(unsigned char *cpumaps, int maplen, int vcpu);
/** VIR_COPY_CPUMAP(cpumaps, maplen, vcpu, cpumap): copies vCPU `vcpu`'s map
 * into `cpumap`, which needs `maplen` bytes. */
void kvmsched_shim_copy_cpumap(const unsigned char *cpumaps, int maplen, int vcpu, unsigned char *cpumap);

#endif
