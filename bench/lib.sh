# What the benchmark scripts read from /proc, shared by bench/run, bench/floor/run and
# bench/presence/run. Sourced, not run.

TICK=$(getconf CLK_TCK)
# Each takes process ids and sums over them.
# utime+stime in clock ticks, all threads of the processes (dead ones included).
cpu_ticks() { local p; for p; do sed 's/.*) //' "/proc/$p/stat"; done | awk '{s += $12 + $13} END {print s + 0}'; }
# Run time in nanoseconds summed over the live threads.
cpu_ns() { local p; for p; do cat /proc/"$p"/task/*/schedstat; done 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }
# Context switches (voluntary and not) summed over the live threads.
ctx_switches() { local p; for p; do cat /proc/"$p"/task/*/status; done 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {printf "%d\n", s}'; }
# UDP datagrams the kernel dropped for a full receive buffer, machine-wide (RcvbufErrors).
udp_drops() { awk '/^Udp:/ && $6 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }
