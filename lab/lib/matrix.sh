#!/usr/bin/env bash
# The distribution matrix: the release binary built on this host, run against other
# Debian releases' own libvirtd + QEMU, each in a debootstrap chroot cached under
# lab/cache/chroot-SUITE.
#
# usage: lab/lib/matrix.sh [--prepare] [SUITE...]      (default suites: bullseye trixie)
#   --prepare   only build/refresh the cached chroots, run nothing
#
# Per suite: mount /proc /sys /dev /dev/pts, the repository at the same path, and
# lab/out/matrix/SUITE over the repository's lab/out (so the chroot's reports never mix
# with the host lab's); start the chroot's virtlogd + libvirtd; run the checks and the
# lab runner INSIDE the chroot (its virsh, its daemon socket, its QEMU); stop both
# daemons by the PIDs in the chroot's state dir; undo every mount. The same teardown
# runs on every exit path (normal end, error, SIGINT, SIGTERM).
#
# While a suite runs, lab/cache/chroot-SUITE holds bind mounts of /dev, /proc, /sys and
# the repository: never delete lab/cache (git clean -x, rm -rf) during a matrix run.
#
# Environment: KVMSCHED_RELEASE_BIN (binary to test; default scripts/release's artifact),
# KVL_STATE (the HOST lab's state dir, whose run.lock this takes so the matrix never runs
# beside another lab run), KVL_MIRROR (Debian mirror), KVL_LOCK_WAIT (s, default 3600).
set -uo pipefail
LAB_DIR="${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
REPO_DIR="${REPO_DIR:-$(cd "$LAB_DIR/.." && pwd)}"
CACHE="$LAB_DIR/cache"
OUT="$LAB_DIR/out/matrix"
HOST_STATE="${KVL_STATE:-/run/kvmsched-lab}"
MIRROR="${KVL_MIRROR:-http://deb.debian.org/debian}"
LOCK_WAIT="${KVL_LOCK_WAIT:-3600}"
# The release artifact (scripts/release; tests/release.rs reads the same variable). Not
# $KVMSCHED: lab/lab defaults that to the host build, which needs the host's glibc.
KVMSCHED="${KVMSCHED_RELEASE_BIN:-$REPO_DIR/target/x86_64-unknown-linux-gnu/release/kvmsched}"
case "$KVMSCHED" in /*) ;; *) KVMSCHED="$REPO_DIR/$KVMSCHED" ;; esac
# Inside every chroot: the lab's state dir (PID files the runner's kill/start-libvirtd
# events use), the URI, and the lab runner itself.
CSTATE=/run/kvmsched-lab
CURI=qemu:///system
# (the chroot's own python3: bullseye's is 3.9, so the runner must stay 3.9-compatible)
RUNNER=(env PYTHONPATH="$LAB_DIR" python3 -m kvmlab)
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 python3)

say() { echo "lab matrix: $*"; }
die() { echo "lab matrix: $*" >&2; exit 1; }

# --------------------------------------------------------------------------- teardown
ROOT=""          # the chroot currently set up ("" = none)
MOUNTS=()        # mount points made for it, in mount order
CHILD=""         # the long-running command in progress (signalled on INT/TERM)

pid_in_root() {  # pid name root -> true if pid is a live NAME whose root is ROOT
  local pid=$1 name=$2 root=$3
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] &&
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ]
}

stop_pid() {  # pid label: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1 label=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 40); do [ -e "/proc/$pid" ] || break; sleep 0.25; done
  [ -e "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
  say "stopped $label pid $pid"
}

teardown_root() {
  local root=$ROOT name pid m i
  [ -n "$root" ] || return 0
  if [ -n "$(daemon_pid libvirtd)" ]; then
    for name in $(chroot "$root" virsh -q -c "$CURI" list --all --name 2>/dev/null | grep '^kvl-'); do
      chroot "$root" virsh -q -c "$CURI" destroy "$name" >/dev/null 2>&1
      chroot "$root" virsh -q -c "$CURI" undefine "$name" >/dev/null 2>&1
      say "removed guest $name"
    done
  fi
  for name in libvirtd virtlogd; do
    pid=$(daemon_pid "$name")
    [ -n "$pid" ] && stop_pid "$pid" "$name (chroot $(basename "$root"))"
    rm -f "$root$CSTATE/$name.pid"
  done
  # Anything else still running with this chroot as its root (a QEMU the daemon left
  # behind after a crash): each stopped by its own PID.
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/root" 2>/dev/null)" = "$root" ] || continue
    pid=${d#/proc/}
    [ "$pid" = "$$" ] && continue
    stop_pid "$pid" "$(cat "$d/comm" 2>/dev/null) (left in chroot $(basename "$root"))"
  done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    m=${MOUNTS[$i]}
    umount "$m" 2>/dev/null || umount -l "$m" || echo "lab matrix: could not unmount $m" >&2
  done
  MOUNTS=()
  # mounts a killed earlier run (SIGKILL: no trap) left under this root, deepest first
  for m in $(findmnt -rn -o TARGET | grep -F "$root/" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
    say "unmounted $m (left by an earlier run)"
  done
  ROOT=""
  if findmnt -rn -o TARGET | grep -qF "$root/"; then
    echo "lab matrix: mounts left under $root:" >&2
    findmnt -rn -o TARGET | grep -F "$root/" >&2
  fi
}

on_signal() {
  trap - INT TERM
  say "signal $1: stopping"
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  exit $((128 + $2))
}
trap 'teardown_root' EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM

# run_child CMD...: in the background so INT/TERM are handled at once (bash runs traps
# only between foreground commands), then its exit status. In a session of its own, so a
# terminal's Ctrl-C reaches this script only (a child that handled the SIGINT itself would
# make bash drop it) and on_signal stops the child in order.
run_child() {
  setsid "$@" &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=""
  return $rc
}

# --------------------------------------------------------------------------- setup
bind() {  # src dst [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2" || die "mount --bind $1 $2 failed"
  MOUNTS+=("$2")
  [ "${3:-}" != ro ] || mount -o remount,bind,ro "$2" || die "cannot make $2 read-only"
}

mount_root() {  # root [with-repo]
  # first whatever a killed earlier run left: its daemons, guests and mounts
  ROOT=$1
  teardown_root
  ROOT=$1
  bind /proc "$ROOT/proc"
  bind /sys "$ROOT/sys"
  bind /dev "$ROOT/dev"
  bind /dev/pts "$ROOT/dev/pts"
  if [ "${2:-}" = with-repo ]; then
    # read-only: the chroot writes only its reports (lab/out below, read-write)
    bind "$REPO_DIR" "$ROOT$REPO_DIR" ro
    mkdir -p "$OUT/$SUITE" "$REPO_DIR/lab/out"
    bind "$OUT/$SUITE" "$ROOT$REPO_DIR/lab/out"
  fi
}

# A clean environment inside the chroot (none of the host's PATH, PYTHONPATH, ...).
CENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
# fd 9 (the host lab lock) is closed for everything run in the chroot: a daemon that
# inherited it would hold the lock after a killed matrix run (seen: a SIGKILLed run's
# libvirtd + virtlogd kept every later lab run waiting).
in_root() { chroot "$ROOT" "${CENV[@]}" "$@" 9>&-; }

daemon_pid() {  # name -> PID from the chroot's state dir if it is that daemon in this root
  local f="$ROOT$CSTATE/$1.pid" pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  pid_in_root "$pid" "$1" "$ROOT" && echo "$pid"
  return 0
}

prepare() {  # suite: build or refresh lab/cache/chroot-SUITE
  local suite=$1 root="$CACHE/chroot-$1" want
  want=$(printf '%s\n' "$suite" "${PKGS[@]}" "namespaces-v1" | sha256sum | cut -c1-16)
  if [ "$(cat "$root/.kvl-ready" 2>/dev/null)" = "$want" ]; then
    say "$suite: cached chroot $root"
    return 0
  fi
  command -v debootstrap >/dev/null || {
    say "CHANGE: apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
      die "cannot install debootstrap"
  }
  mkdir -p "$CACHE"
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    rm -rf "$root.tmp"
    say "$suite: debootstrap --variant=minbase $suite ($MIRROR)"
    local t0=$SECONDS
    debootstrap --variant=minbase "$suite" "$root.tmp" "$MIRROR" >"$CACHE/debootstrap-$suite.log" 2>&1 ||
      { tail -5 "$CACHE/debootstrap-$suite.log" >&2; die "$suite: debootstrap failed (log $CACHE/debootstrap-$suite.log)"; }
    mv "$root.tmp" "$root"
    say "$suite: debootstrap took $((SECONDS - t0)) s"
  fi
  mount_root "$root"
  # no service starts from package scripts; DNS for apt
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  say "$suite: apt-get install ${PKGS[*]}"
  local t0=$SECONDS
  in_root apt-get update -qq || die "$suite: apt-get update failed"
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" \
    >"$CACHE/apt-$suite.log" 2>&1 || { tail -20 "$CACHE/apt-$suite.log" >&2; die "$suite: apt-get install failed"; }
  in_root apt-get clean
  say "$suite: packages installed in $((SECONDS - t0)) s"
  # accounts libvirtd looks up before reading qemu.conf (7.0 also wants group libvirt-qemu)
  local g
  for g in kvm libvirt-qemu; do in_root getent group "$g" >/dev/null || in_root groupadd --system "$g"; done
  in_root getent passwd libvirt-qemu >/dev/null ||
    in_root useradd --system -g libvirt-qemu -G kvm -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  # the chroot is the lab's own: its qemu.conf is written whole
  cat >"$root/etc/libvirt/qemu.conf" <<'CONF'
# written by kvmsched's lab/lib/matrix.sh (a chroot's libvirtd beside the host's)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# no private mount namespace per guest: a chroot cannot stop mount propagation out of /
namespaces = [ ]
CONF
  teardown_root
  echo "$want" >"$root/.kvl-ready"
  say "$suite: chroot ready ($(du -sh "$root" | cut -f1))"
}

start_daemons() {
  local pid i
  [ -z "$(daemon_pid libvirtd)" ] || die "a libvirtd from $ROOT is already running"
  rm -rf "$ROOT/run/libvirt" "$ROOT$CSTATE"
  mkdir -p "$ROOT/run/libvirt" "$ROOT$CSTATE" "$ROOT/var/log/libvirt" "$ROOT/var/lib/libvirt"
  in_root virtlogd -d -p "$CSTATE/virtlogd.pid" || die "virtlogd did not start"
  # started the way lab/lib/setup.sh and the runner's start-libvirtd do
  in_root bash -c 'setsid libvirtd --pid-file "$1" >"$2" 2>&1 </dev/null &' _ \
    "$CSTATE/libvirtd.pid" "$CSTATE/libvirtd.out"
  for i in $(seq 1 60); do
    pid=$(daemon_pid libvirtd)
    [ -n "$pid" ] && in_root virsh -q -c "$CURI" nodeinfo >/dev/null 2>&1 && break
    sleep 1
  done
  [ -n "$pid" ] || { tail -20 "$ROOT$CSTATE/libvirtd.out" >&2; die "libvirtd did not start in $ROOT"; }
  in_root virsh -q -c "$CURI" nodeinfo >/dev/null 2>&1 ||
    { tail -20 "$ROOT$CSTATE/libvirtd.out" >&2; die "libvirtd in $ROOT does not answer $CURI"; }
  say "$SUITE: started virtlogd pid $(daemon_pid virtlogd), libvirtd pid $pid (root $ROOT)"
}

# --------------------------------------------------------------------------- checks
RESULTS=()   # "name PASS|FAIL detail"
check() {  # name rc detail
  local r=PASS
  [ "$2" = 0 ] || r=FAIL
  RESULTS+=("$1 $r${3:+ ($3)}")
  say "$SUITE: $1: $r${3:+ ($3)}"
}

cli_checks() {
  local out err rc args
  out=$(in_root "$KVMSCHED" -c "$CURI" status 2>&1); rc=$?
  echo "$out" | sed 's/^/    /'
  check "status" $rc
  err=$(in_root "$KVMSCHED" -c "$CURI" --trace status 2>&1 >/dev/null); rc=$?
  local calls
  calls=$(echo "$err" | grep -c 'vir[A-Z]' || true)
  [ $rc != 0 ] || [ "$calls" -ge 3 ] || rc=1
  check "--trace status" $rc "$calls traced calls"
  out=$(in_root "$KVMSCHED" -c test:///default status 2>&1); rc=$?
  [ $rc = 0 ] || echo "$out" | sed 's/^/    /'
  local why=""
  [ $rc = 0 ] || why=$(echo "$out" | tail -1 | cut -c1-160)
  check "test:///default status" $rc "$why"
  local bad=0 n=0
  for args in "frobnicate" "vcpu" "vcpu 0" "vcpu -1" "memory abc" "status --window" \
              "--log-format xml status" "--bogus"; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    err=$(in_root "$KVMSCHED" $args 2>&1 >/dev/null); rc=$?
    if [ $rc != 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" != 1 ] || [[ "$err" != kvmsched:* ]]; then
      echo "    bad input '$args': exit $rc, stderr: $err"
      bad=$((bad + 1))
    fi
  done
  check "bad input" $bad "$((n - bad))/$n exit 2 with one line"
}

scenario() {  # name: the lab runner inside the chroot, short timings
  local rc
  # chroot + env exec the runner, so CHILD is the runner's own PID (a signal reaches it
  # first; it tears its guests down before the daemons are stopped)
  run_child chroot "$ROOT" "${CENV[@]}" KVMSCHED="$KVMSCHED" KVL_STATE="$CSTATE" KVL_URI="$CURI" \
    KVL_ACCEL="${KVL_ACCEL:-tcg}" LAB_DIR="$LAB_DIR" REPO_DIR="$REPO_DIR" \
    "${RUNNER[@]}" run "$1" --short 9>&-
  rc=$?
  # The verdict is the report's: a PENDING or SKIPPED scenario (exit 0) did not pass.
  local report="$OUT/$SUITE/$1/report.md" verdict
  verdict=$(head -1 "$report" 2>/dev/null | sed -n 's/^# .*: \([A-Z]*\)$/\1/p')
  [ "$verdict" = PASS ] || [ $rc != 0 ] || rc=1
  check "$1 --short" $rc "${verdict:-no report}, lab/out/matrix/$SUITE/$1/report.md"
}

run_suite() {
  SUITE=$1
  local t0=$SECONDS glibc lv qemu
  RESULTS=()
  prepare "$SUITE" || return 1
  mount_root "$CACHE/chroot-$SUITE" with-repo
  rm -rf "${OUT:?}/$SUITE/"*
  glibc=$(in_root dpkg-query -W -f='${Version}' libc6)
  start_daemons
  lv=$(in_root virsh -c "$CURI" version 2>/dev/null | awk '/Using library/ {print $4}')
  qemu=$(in_root virsh -c "$CURI" version 2>/dev/null | awk '/Running hypervisor/ {print $4}')
  say "$SUITE: glibc $glibc, libvirt $lv, QEMU $qemu; kvmsched $KVMSCHED"
  cli_checks
  scenario cpu-all-on-one
  scenario mem-one-consumer
  [ "$SUITE" = trixie ] && scenario fault-libvirtd-restart
  teardown_root
  local verdict=PASS r
  for r in "${RESULTS[@]}"; do [[ "$r" == *" FAIL"* ]] && verdict=FAIL; done
  SUMMARY+=("matrix $SUITE (glibc ${glibc%%-*}, libvirt $lv, QEMU $qemu): $verdict in $((SECONDS - t0)) s")
  for r in "${RESULTS[@]}"; do SUMMARY+=("    $r"); done
  [ $verdict = PASS ]
}

# --------------------------------------------------------------------------- main
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"
only_prepare=0
suites=()
for a in "$@"; do
  case "$a" in
    --prepare) only_prepare=1 ;;
    bullseye|trixie) suites+=("$a") ;;
    *) die "unknown argument '$a' (suites: bullseye trixie; --prepare)" ;;
  esac
done
[ ${#suites[@]} -gt 0 ] || suites=(bullseye trixie)

if [ $only_prepare = 1 ]; then
  for s in "${suites[@]}"; do prepare "$s" || exit 1; done
  exit 0
fi

[ -x "$KVMSCHED" ] || die "no kvmsched binary at $KVMSCHED (run scripts/release)"
mkdir -p "$HOST_STATE" "$OUT"
exec 9>>"$HOST_STATE/run.lock"
if ! flock -n 9; then
  say "another lab run holds $HOST_STATE/run.lock; waiting up to $LOCK_WAIT s"
  run_child flock -w "$LOCK_WAIT" 9 || die "lab lock $HOST_STATE/run.lock still held after $LOCK_WAIT s"
fi

# the guest kernel + initramfs, built on the host (the chroots see lab/cache at the same path)
bash "$LAB_DIR/lib/image.sh" || die "guest image build failed"

t0=$SECONDS
SUMMARY=()
rc=0
for s in "${suites[@]}"; do run_suite "$s" || rc=1; done
echo
for l in "${SUMMARY[@]}"; do echo "$l"; done
echo "lab matrix took $((SECONDS - t0)) s (exit $rc)"
exit $rc
