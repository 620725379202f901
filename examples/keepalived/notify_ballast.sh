#!/bin/sh
# keepalived notify hook: records every state change of the instance with a timestamp, in the
# file named first (keepalived appends TYPE NAME STATE PRIORITY), and in syslog.
# Usage (keepalived.conf): notify "/etc/keepalived/notify_ballast.sh /var/log/ballast-vrrp.log"
# Keep it fast: keepalived does not wait for it, but a slow hook can run after the next change.
log=$1
shift
line="$(date +%s.%N) $(hostname) $*"
echo "$line" >>"$log"
command -v logger >/dev/null 2>&1 && logger -t ballast-vrrp "$*"
exit 0
