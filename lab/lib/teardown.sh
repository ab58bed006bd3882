#!/usr/bin/env bash
# Destroy/undefine every kvl- guest; stop only the daemons the lab started (by PID).
set -uo pipefail
: "${KVL_URI:=qemu:///system}" "${KVL_STATE:=/run/kvmsched-lab}"
if command -v virsh >/dev/null && virsh -c "$KVL_URI" version >/dev/null 2>&1; then
  for d in $(virsh -c "$KVL_URI" list --all --name | grep '^kvl-' || true); do
    virsh -c "$KVL_URI" destroy "$d" >/dev/null 2>&1 || true
    virsh -c "$KVL_URI" undefine "$d" >/dev/null 2>&1 || true
    echo "lab teardown: removed guest $d"
  done
fi
for name in libvirtd virtlogd; do
  f="$KVL_STATE/$name.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
    kill -TERM "$pid"
    for i in $(seq 1 40); do [ -e "/proc/$pid" ] || break; sleep 0.25; done
    [ -e "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null
    echo "lab teardown: stopped $name pid $pid (started by the lab)"
  fi
  rm -f "$f"
done
