/* wl: the lab's guest workload program (static, runs as a child of /init).
 *
 *   wl PHASES          e.g.  wl cpu            wl idle:20,cpu:60      wl duty:30
 *                            wl idle:10,mem,grow=15,upto=max,hold=10,free
 *
 * PHASES is a comma-separated list. A token starting with a kind opens a phase;
 * a token "key=value" (or "free") is an option of the phase before it.
 *   idle[:S]          sleep S s (no S: forever)
 *   cpu[:S]           every online CPU 100 % busy for S s (no S: forever)
 *   duty:P[:S]        every online CPU P % busy (100 ms period) for S s
 *        pin            (option of cpu/duty) thread i stays on CPU i, so each
 *                       vCPU carries one thread's load; without it the guest
 *                       kernel moves the threads between its vCPUs
 *   mem[:S]           grow anonymous memory, options:
 *        grow=MBPS      growth rate in MiB/s (default 15), each page touched
 *        upto=MB|max    stop growing at MB MiB (max: until allocation fails)
 *        floor=MB       never push the guest's MemAvailable below MB (default 48)
 *        patience=S     a stall (no memory to take) longer than S s counts as
 *                       "allocation failed": keep what we have (default 15)
 *        hold=S         hold the allocation S s (default 10)
 *        free           release everything after the hold
 * After the last phase the program idles forever. Progress goes to stdout
 * (the serial console), one line per event / every 2 s while growing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024UL * 1024UL)
#define MAX_CHUNKS 65536

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static double t0;
static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("wl: t=%.1f ", now() - t0);
  vprintf(fmt, ap);
  printf("\n");
  fflush(stdout);
  va_end(ap);
}

/* MemAvailable / MemFree in MiB from /proc/meminfo (-1 if unreadable) */
static long meminfo_mib(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t kl = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
      v = strtol(line + kl + 1, NULL, 10) / 1024;
      break;
    }
  }
  fclose(f);
  return v;
}

/* ---- CPU load ---------------------------------------------------------- */
struct burn { double end; int pct; int pin; long cpu; };
static void *burner(void *arg) {
  struct burn *b = arg;
  volatile unsigned long x = 0;
  if (b->pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(b->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
      say("cannot pin thread to cpu %ld", b->cpu);
  }
  const double period = 0.1;
  for (;;) {
    double start = now();
    if (b->end > 0 && start >= b->end) break;
    double busy = period * b->pct / 100.0;
    while (now() - start < busy)
      for (int i = 0; i < 20000; i++) x += i;
    if (b->pct < 100) sleep_s(period - busy);
  }
  return NULL;
}
static void cpu_phase(double secs, int pct, int pin) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  say("phase cpu pct=%d threads=%ld secs=%.0f pin=%d", pct, n, secs, pin);
  static pthread_t th[256];
  static struct burn b[256];
  if (n > 256) n = 256;
  for (long i = 0; i < n; i++) {
    b[i] = (struct burn){secs > 0 ? now() + secs : -1, pct, pin, i};
    pthread_create(&th[i], NULL, burner, &b[i]);
  }
  for (long i = 0; i < n; i++) pthread_join(th[i], NULL);
  say("phase cpu done");
}

/* ---- memory ------------------------------------------------------------ */
struct memopt { double rate; long upto; long floor; double patience, hold, secs; int do_free; };
static void *chunks[MAX_CHUNKS];
static long nchunks;

static void mem_phase(struct memopt *o) {
  char upto[32];
  if (o->upto < 0) snprintf(upto, sizeof upto, "max");
  else snprintf(upto, sizeof upto, "%ldMB", o->upto);
  say("phase mem grow=%.1fMB/s upto=%s floor=%ldMB patience=%.0fs hold=%.0fs free=%d", o->rate,
      upto, o->floor, o->patience, o->hold, o->do_free);
  long page = sysconf(_SC_PAGESIZE);
  double budget = 0, last = now(), last_print = 0, stall_since = -1;
  const char *why = "reached target";
  double start = now();
  for (;;) {
    double t = now();
    if (o->upto >= 0 && nchunks >= o->upto) break;
    if (o->secs > 0 && t - start >= o->secs) { why = "phase time over"; break; }
    if (nchunks >= MAX_CHUNKS) break;
    if (stall_since < 0) budget += (t - last) * o->rate;
    if (budget > 4) budget = 4;
    last = t;
    if (t - last_print >= 2) {
      say("mem grown=%ldMB avail=%ldMB free=%ldMB%s", nchunks, meminfo_mib("MemAvailable"),
          meminfo_mib("MemFree"), stall_since >= 0 ? " (waiting for memory)" : "");
      last_print = t;
    }
    if (budget < 1) { sleep_s((1 - budget) / o->rate); continue; }
    long avail = meminfo_mib("MemAvailable");
    void *p = MAP_FAILED;
    if (avail < 0 || avail >= o->floor + 1)
      p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {            /* no room: back off, maybe give up */
      if (stall_since < 0) stall_since = t;
      if (t - stall_since > o->patience) { why = "allocation failed (no memory for patience s)"; break; }
      sleep_s(0.2);
      continue;
    }
    stall_since = -1;
    for (unsigned long off = 0; off < MiB; off += page) ((volatile char *)p)[off] = (char)(off >> 12);
    chunks[nchunks++] = p;
    budget -= 1;
  }
  say("mem stop growing: %s; holding %ldMB avail=%ldMB", why, nchunks, meminfo_mib("MemAvailable"));
  double hold_end = now() + o->hold;
  while (now() < hold_end) {
    sleep_s(hold_end - now() < 2 ? hold_end - now() : 2);
    say("mem holding %ldMB avail=%ldMB", nchunks, meminfo_mib("MemAvailable"));
  }
  if (o->do_free) {
    long n = nchunks;
    while (nchunks > 0) munmap(chunks[--nchunks], MiB);
    say("mem freed %ldMB avail=%ldMB", n, meminfo_mib("MemAvailable"));
  }
}

/* ---- phase parsing ----------------------------------------------------- */
static int is_kind(const char *tok) {
  static const char *kinds[] = {"idle", "cpu", "duty", "mem", NULL};
  for (int i = 0; kinds[i]; i++) {
    size_t l = strlen(kinds[i]);
    if (strncmp(tok, kinds[i], l) == 0 && (tok[l] == 0 || tok[l] == ':')) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  t0 = now();
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *spec = argc > 1 ? argv[1] : "idle";
  say("start wl=%s", spec);
  char *s = strdup(spec);
  char *toks[256];
  int nt = 0;
  for (char *p = strtok(s, ","); p && nt < 256; p = strtok(NULL, ",")) toks[nt++] = p;
  for (int i = 0; i < nt; i++) {
    char *tok = toks[i];
    if (!is_kind(tok)) { say("ignoring stray token '%s'", tok); continue; }
    char *a1 = strchr(tok, ':'), *a2 = NULL;
    if (a1) { *a1++ = 0; a2 = strchr(a1, ':'); if (a2) *a2++ = 0; }
    if (strcmp(tok, "idle") == 0) {
      double secs = a1 ? atof(a1) : -1;
      say("phase idle secs=%.0f", secs);
      if (secs < 0) break;
      sleep_s(secs);
    } else if (strcmp(tok, "cpu") == 0 || strcmp(tok, "duty") == 0) {
      int duty = strcmp(tok, "duty") == 0;
      int pct = duty ? (a1 ? atoi(a1) : 30) : 100;
      double secs = duty ? (a2 ? atof(a2) : -1) : (a1 ? atof(a1) : -1);
      if (pct < 1) pct = 1;
      if (pct > 100) pct = 100;
      int pin = 0;
      while (i + 1 < nt && !is_kind(toks[i + 1])) {
        if (strcmp(toks[++i], "pin") == 0) pin = 1;
        else say("unknown cpu option '%s'", toks[i]);
      }
      cpu_phase(secs, pct, pin);
    } else if (strcmp(tok, "mem") == 0) {
      struct memopt o = {15, -1, 48, 15, 10, a1 ? atof(a1) : -1, 0};
      while (i + 1 < nt && !is_kind(toks[i + 1])) {
        char *opt = toks[++i], *v = strchr(opt, '=');
        if (v) *v++ = 0;
        if (strcmp(opt, "grow") == 0 && v) o.rate = atof(v) > 0 ? atof(v) : 15;
        else if (strcmp(opt, "upto") == 0 && v) o.upto = strcmp(v, "max") == 0 ? -1 : atol(v);
        else if (strcmp(opt, "floor") == 0 && v) o.floor = atol(v);
        else if (strcmp(opt, "patience") == 0 && v) o.patience = atof(v);
        else if (strcmp(opt, "hold") == 0 && v) o.hold = atof(v);
        else if (strcmp(opt, "free") == 0) o.do_free = 1;
        else say("unknown mem option '%s'", opt);
      }
      mem_phase(&o);
    }
  }
  say("all phases done; idling");
  for (;;) pause();
}
