/* libvirt's cpumap helpers are function-like macros, invisible to bindgen.
 * These functions expose each macro unchanged so Rust can call (and test
 * against) the exact C definition. */
#ifndef KVMSCHED_SHIM_H
#define KVMSCHED_SHIM_H

int kvmsched_shim_cpu_maplen(int cpus);
void kvmsched_shim_use_cpu(unsigned char *cpumap, int cpu);
void kvmsched_shim_unuse_cpu(unsigned char *cpumap, int cpu);
int kvmsched_shim_cpu_used(const unsigned char *cpumap, int cpu);
int kvmsched_shim_cpu_usable(const unsigned char *cpumaps, int maplen, int vcpu, int cpu);
unsigned char *kvmsched_shim_get_cpumap(unsigned char *cpumaps, int maplen, int vcpu);
void kvmsched_shim_copy_cpumap(const unsigned char *cpumaps, int maplen, int vcpu, unsigned char *cpumap);

#endif
