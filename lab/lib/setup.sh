#!/usr/bin/env bash
# Idempotent host setup for the lab. Prints every system change it makes.
# On a host where a libvirtd runs that the lab did not start, it changes nothing.
set -euo pipefail
: "${KVL_URI:=qemu:///system}" "${KVL_STATE:=/run/kvmsched-lab}"
export DEBIAN_FRONTEND=noninteractive

say()    { echo "lab setup: $*"; }
change() { echo "lab setup: CHANGE: $*"; }

# pid_is NAME PIDFILE -> true if PIDFILE holds the PID of a live process called NAME
pid_is() {
  local name=$1 f=$2 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]
}

wait_virsh() {
  local i
  for i in $(seq 1 60); do
    if virsh -c "$KVL_URI" nodeinfo >/dev/null 2>&1; then
      say "libvirt answers on $KVL_URI"; return 0
    fi
    sleep 1
  done
  echo "lab setup: libvirt did not answer on $KVL_URI within 60 s" >&2
  [ -s "$KVL_STATE/libvirtd.out" ] && tail -20 "$KVL_STATE/libvirtd.out" >&2
  return 1
}

if [ "$(id -u)" != 0 ]; then
  echo "lab setup: must run as root (installs packages, starts libvirtd)" >&2; exit 1
fi

# --- a libvirtd the lab did not start: use it as is --------------------------------
if running=$(pgrep -x libvirtd) && ! pid_is libvirtd "$KVL_STATE/libvirtd.pid"; then
  say "libvirtd already running (pid $(echo $running | tr '\n' ' ')) and not started by the lab:"
  say "changing no system configuration (no apt sources, accounts, qemu.conf); using it as is."
  command -v virsh >/dev/null || { echo "lab setup: virsh missing (install libvirt-clients)" >&2; exit 1; }
  wait_virsh
  exit 0
fi

# --- packages ---------------------------------------------------------------------
backports_source() {
  grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list
}
need_pkgs=()
for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
need_qemu=0
dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'install ok installed' || need_qemu=1

if [ ${#need_pkgs[@]} -gt 0 ] || [ $need_qemu = 1 ]; then
  if ! backports_source; then
    # the Debian mirror this machine already uses for bookworm (deb822 or one-line format)
    mirror=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' \
               /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' \
               /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$mirror" ] || { echo "lab setup: no bookworm apt source found to derive the backports mirror from" >&2; exit 1; }
    f=/etc/apt/sources.list.d/kvmsched-lab-bookworm-backports.sources
    cat > "$f" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    change "wrote apt source $f (bookworm-backports from $mirror)"
  fi
  change "apt-get update"
  apt-get update -qq
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    change "apt-get install ${need_pkgs[*]}"
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  if [ $need_qemu = 1 ]; then
    change "apt-get install -t bookworm-backports qemu-system-x86"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
  fi
else
  say "packages present (libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, qemu-system-x86)"
fi

# --- accounts libvirtd looks up before reading qemu.conf ------------------------------
# (Debian's build defaults to user libvirt-qemu, group libvirt-qemu; /dev/kvm wants group kvm)
for g in kvm libvirt-qemu; do
  if ! getent group "$g" >/dev/null; then groupadd --system "$g"; change "created system group $g"; fi
done
if ! getent passwd libvirt-qemu >/dev/null; then
  useradd --system -g libvirt-qemu -G kvm -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  change "created system user libvirt-qemu"
fi

# --- qemu.conf --------------------------------------------------------------------
conf=/etc/libvirt/qemu.conf
mkdir -p /etc/libvirt
[ -e "$conf" ] || { touch "$conf"; change "created $conf"; }
set_conf() {  # key value(as written)
  local key=$1 val=$2
  if grep -Eq "^[[:space:]]*$key[[:space:]]*=[[:space:]]*$val[[:space:]]*\$" "$conf"; then return 0; fi
  [ -e "$conf.kvmsched-lab.orig" ] || { cp -p "$conf" "$conf.kvmsched-lab.orig"; change "saved $conf.kvmsched-lab.orig"; }
  sed -i -E "s/^[[:space:]]*$key[[:space:]]*=.*/# (kvmsched lab) &/" "$conf"
  echo "$key = $val" >> "$conf"
  change "$conf: $key = $val"
  conf_changed=1
}
conf_changed=0
set_conf user '"root"'
set_conf group '"root"'
set_conf dynamic_ownership 0
set_conf remember_owner 0
set_conf security_driver '"none"'

for d in /var/log/libvirt /var/run/libvirt /var/lib/libvirt "$KVL_STATE"; do
  [ -d "$d" ] || { mkdir -p "$d"; change "mkdir $d"; }
done

# --- daemons (no systemd) ---------------------------------------------------------
if pgrep -x virtlogd >/dev/null; then
  say "virtlogd running (pid $(pgrep -x virtlogd | tr '\n' ' '))"
else
  virtlogd -d -p "$KVL_STATE/virtlogd.pid"
  for i in $(seq 1 20); do pid_is virtlogd "$KVL_STATE/virtlogd.pid" && break; sleep 0.25; done
  change "started virtlogd pid $(cat "$KVL_STATE/virtlogd.pid")"
fi
if pid_is libvirtd "$KVL_STATE/libvirtd.pid"; then
  say "libvirtd running (pid $(cat "$KVL_STATE/libvirtd.pid"), started by the lab)"
  [ $conf_changed = 0 ] || say "note: qemu.conf changed while libvirtd runs; run 'lab/lab teardown' then setup to apply"
else
  # foreground-style start in the background so its log lands in libvirtd.out
  setsid libvirtd --pid-file "$KVL_STATE/libvirtd.pid" >"$KVL_STATE/libvirtd.out" 2>&1 </dev/null &
  for i in $(seq 1 40); do pid_is libvirtd "$KVL_STATE/libvirtd.pid" && break; sleep 0.25; done
  pid_is libvirtd "$KVL_STATE/libvirtd.pid" || { echo "lab setup: libvirtd failed to start:" >&2; cat "$KVL_STATE/libvirtd.out" >&2; exit 1; }
  change "started libvirtd pid $(cat "$KVL_STATE/libvirtd.pid")"
fi
wait_virsh
