#!/bin/bash
# Single-node Ceph (mon + memstore OSD + radosgw) on loopback, all state under $CEPH_DIR.
# Adapted from shared/recipes/ceph-rgw-start.sh: ports and state dir come from the environment
# so parallel runs (or other projects on the same machine) do not collide.
#   CEPH_DIR   state dir, wiped and recreated (required)
#   RGW_PORT   S3 port (default 7480)
#   MON_PORT   monitor port, msgr v1 (default 6789)
#   S3_ACCESS_KEY / S3_SECRET_KEY   keys of the S3 user (default testkey / testsecret)
# Daemons write pid files to $CEPH_DIR/run/*.pid; stop them with kill on those pids.
# On failure the daemons started so far are killed, so nothing is left behind.
set -euo pipefail
D=${CEPH_DIR:?set CEPH_DIR to an empty state directory}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-6789}
ACCESS_KEY=${S3_ACCESS_KEY:-testkey}
SECRET_KEY=${S3_SECRET_KEY:-testsecret}

for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool; do
    command -v "$b" >/dev/null || {
        echo "$b not found; install: apt-get install -y --no-install-recommends" \
            "ceph-mon ceph-osd radosgw" >&2
        exit 127
    }
done

# Failure path: SIGKILL, as the state is throwaway and a SIGTERMed radosgw whose OSD is already
# gone hangs for minutes.
stop_daemons() {
    local f
    for f in "$D"/run/*.pid; do
        if [ -e "$f" ]; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
    done
}
trap 'echo "ceph start failed; logs in $D/log" >&2; stop_daemons' ERR
trap 'stop_daemons; exit 130' INT
trap 'stop_daemons; exit 143' TERM

# pacific's MonClient can send a command before it has the monmap: the mon answers
# "wrong fsid" (EPERM) and the CLI or the OSD's init fails. Seen in 2 of 7 starts here; retry.
retry() {  # retry COMMAND...; the commands retried are idempotent
    local i
    for i in 1 2 3 4 5; do
        if "$@"; then return 0; fi
        echo "retrying ($i): $*" >&2
        sleep 0.5
    done
    return 1
}

wait_for() {  # wait_for TRIES DESCRIPTION COMMAND... (a try every 0.25 s)
    local n=$1 what=$2; shift 2
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    echo "timed out waiting for $what" >&2
    return 1
}

rm -rf "$D"; mkdir -p "$D"/{run,log,mon/ceph-a,osd/ceph-0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind ipv6 = false
ms bind msgr2 = false
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
osd memory target = 1073741824
# The OSD's own CRUSH/device-class update at start can race its monitor session in pacific
# ("mon_cmd_maybe_osd_create fail: 'wrong fsid'", the OSD exits); place it from the CLI instead.
osd crush update on start = false
osd class update on start = false
# a hung CLI call should fail the start, not block for the default 300 s
client mount timeout = 30
# one mon, nothing to batch: commit each map change at once. rgw creates its pools one map
# change at a time at start; the 1 s default made startup take ~15 s instead of ~4 s.
paxos propose interval = 0.1
paxos min wait = 0.01
[client.rgw.a]
# tcp_nodelay=1: without it every GET stalls ~40 ms (Nagle + delayed ACK)
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $D/rgw
rgw dns name = localhost
CONF
export CEPH_CONF="$D/ceph.conf"

monmaptool --create --addv a "v1:127.0.0.1:$MON_PORT" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
ceph-mon -i a
# the race below hits most often while the new mon is still electing itself: wait for quorum
wait_for 120 "the monitor" ceph --connect-timeout 5 quorum_status
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(retry ceph --connect-timeout 30 osd new "$OSD_UUID")
retry ceph --connect-timeout 30 osd crush add "osd.$ID" 1.0 root=default host=localhost 2>/dev/null
ceph-osd -i "$ID" --mkfs --osd-uuid "$OSD_UUID" 2>"$D/log/osd-mkfs.err"
retry ceph-osd -i "$ID"
osd_up() { ceph --connect-timeout 5 osd stat | grep -q '1 up'; }
wait_for 240 "the OSD to come up" osd_up
rgw_up() {
    python3 -c "import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=2)" \
        "http://127.0.0.1:$RGW_PORT/"
}
radosgw -n client.rgw.a
wait_for 240 "radosgw on port $RGW_PORT" rgw_up
retry radosgw-admin user create --uid=test --display-name=test \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
trap - ERR
echo "ceph+rgw up on http://127.0.0.1:$RGW_PORT ($ACCESS_KEY/$SECRET_KEY)"
