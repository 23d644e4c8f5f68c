#!/bin/busybox sh
# swapscope's VM guest: /init of the initramfs `cargo xtask vm` builds (xtask/src/vm/initramfs.rs).
# What to run comes from two files the runner writes beside it:
#   /etc/swapscope-vm/config     shell variables: MODULES, TUI, TUI_STRESS, BENCH_RECORDERS,
#                                BENCH_PAIRS, BENCH_STORM_MIB, BENCH_STORM_PASSES, and `export`
#                                lines for swapscope's diagnostics variables
#   /etc/swapscope-vm/scenarios  one scenario per line: its name, a tab, its `stress` arguments
# Every result goes to /out, which is written as a tar archive to the second disk (/dev/vda) at
# the end; the runner checks it (xtask/src/vm/checks.rs).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tracefs nodev /sys/kernel/tracing
mount -t securityfs none /sys/kernel/security
mount -t cgroup2 none /sys/fs/cgroup
echo "swapscope-vm: init started, release $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime) s"
. /etc/swapscope-vm/config
for m in $MODULES; do
  insmod /lib/vm-modules/$m.ko || echo "swapscope-vm: insmod $m failed"
done
mkdir -p /out
uname -r > /out/release
cat /proc/cmdline > /out/cmdline
S=/bin/swapscope
echo "swapscope-vm: doctor"
$S doctor --json > /out/doctor.json 2> /out/doctor.err
echo $? > /out/doctor.rc
$S doctor 2>&1

# The scenarios: each workload under `record`, then `report --json` of its recording.
TAB=$(printf '\t')
while IFS="$TAB" read -r n a; do
  [ -n "$n" ] || continue
  echo "swapscope-vm: $n: record -- stress $a"
  T0=$(cut -d' ' -f1 /proc/uptime)
  # $a is word-split on purpose: it is the argument list.
  $S record -o /out/$n.swsc -- $S stress $a > /out/$n.record.out 2> /out/$n.record.err
  echo $? > /out/$n.record.rc
  T1=$(cut -d' ' -f1 /proc/uptime)
  echo "$T0 $T1" > /out/$n.record.uptime
  tail -n 3 /out/$n.record.err
  echo "swapscope-vm: $n: record exited $(cat /out/$n.record.rc) after $T0 .. $T1 s uptime"
  if [ -s /out/$n.swsc ]; then
    $S report --json /out/$n.swsc > /out/$n.report.json 2> /out/$n.report.err
    echo $? > /out/$n.report.rc
  fi
  cat /proc/swaps > /out/$n.swaps.after
  ls /sys/fs/cgroup > /out/$n.cgroups.after
done < /etc/swapscope-vm/scenarios

if [ "$TUI" = 1 ]; then
  # The TUI check: `live` headless with a recording, then `replay` of that recording headless;
  # their device maps at peak occupancy must agree (docs/vm-tests.md).
  echo "swapscope-vm: tui: live --headless --record -- stress $TUI_STRESS"
  $S live --headless 4000 --frame-dump /out/tui.frames --summary-json /out/tui.live.json --record /out/tui.swsc -- $S stress $TUI_STRESS > /out/tui.live.out 2> /out/tui.live.err
  echo $? > /out/tui.live.rc
  echo "swapscope-vm: tui: live exited $(cat /out/tui.live.rc); replay --headless"
  $S replay /out/tui.swsc --speed max --headless 100000 --summary-json /out/tui.replay.json > /out/tui.replay.out 2> /out/tui.replay.err
  echo $? > /out/tui.replay.rc

  # The exporter check: `serve --tier full` on loopback while the same workload runs, scraped
  # with busybox wget, then SIGTERM (docs/vm-tests.md).
  echo "swapscope-vm: serve: serve --tier full, stress $TUI_STRESS"
  ip link set lo up
  $S serve --tier full --listen 127.0.0.1:9866 --interval 0.5 > /out/serve.out 2> /out/serve.err &
  SP=$!
  i=0
  until wget -qO /out/serve.health http://127.0.0.1:9866/healthz 2>/dev/null || [ $i -ge 120 ]; do
    sleep 0.5; i=$((i+1))
  done
  $S stress $TUI_STRESS > /out/serve.stress.out 2> /out/serve.stress.err
  sleep 2
  wget -qO /out/serve.metrics http://127.0.0.1:9866/metrics
  wget -qO /out/serve.health http://127.0.0.1:9866/healthz
  kill -TERM $SP
  wait $SP
  echo $? > /out/serve.rc
  echo "swapscope-vm: serve exited $(cat /out/serve.rc)"
fi

if [ -n "$BENCH_RECORDERS" ]; then
  # The live benchmark, once per recorder (`before`: /bin/swapscope-before; `after`: this
  # build), its progress lines echoed to the console.
  uname -v > /out/uname-v
  nproc > /out/nproc
  mkdir -p /tmp/b
  for w in $BENCH_RECORDERS; do
    rec=""
    [ "$w" = before ] && rec="--recorder /bin/swapscope-before"
    echo "swapscope-vm: bench $w: swapscope-bench --live --pairs $BENCH_PAIRS --storm-mib $BENCH_STORM_MIB --storm-passes $BENCH_STORM_PASSES $rec"
    { /bin/swapscope-bench --swapscope $S --live --pairs $BENCH_PAIRS --dir /tmp/b --storm-mib $BENCH_STORM_MIB --storm-passes $BENCH_STORM_PASSES $rec --summary-json /out/bench.$w.json 2>&1 > /out/bench.$w.out; echo $? > /out/bench.$w.rc; } | tee /out/bench.$w.err | sed "s/^/swapscope-vm: bench $w: /"
    grep -h -e '^Median' -e '^BPF program' /out/bench.$w.out | sed "s/^/swapscope-vm: bench $w: /"
    echo "swapscope-vm: bench $w: exited $(cat /out/bench.$w.rc)"
  done
fi

cat /proc/swaps > /out/swaps.after
cat /proc/vmstat > /out/vmstat.after
ls /sys/fs/cgroup > /out/cgroups.after
dmesg > /out/dmesg
echo done > /out/done
tar -cf /dev/vda -C /out . && echo "swapscope-vm: results written"
sync
echo "swapscope-vm: powering off"
poweroff -f
