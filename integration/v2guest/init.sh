#!/bin/sh
# /init of the pure cgroup v2 guest's initramfs (busybox sh, PID 1).
#
# Builds the guest's root: the host's / read-only over virtio-9p (tag "hostroot") with a tmpfs
# overlay on top, mounts the writable result share (tag "v2out") at its host path, then hands
# PID 1 to the stage-2 program guest.py in the new root, or with v2guest_init=systemd (run.py
# --systemd) to systemd.  The kernel passes unknown "name=value" command-line parameters to init
# as environment variables (kernel-parameters.txt), which is how v2guest_repo, v2guest_out and
# v2guest_init arrive.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "v2guest init: $*" >/dev/console
    # Exiting PID 1 panics the kernel; with panic=-1 it reboots and qemu -no-reboot exits.
    exit 1
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

# No modules.dep inside the initramfs: load in dependency order (virtio transport, then 9p,
# then the filesystems netfs/fscache that 9p needs, then overlay).
for m in virtio_pci_modern_dev virtio_pci_legacy_dev virtio_ring virtio virtio_pci \
         9pnet 9pnet_virtio netfs fscache 9p overlay; do
    insmod "/modules/$m.ko" || fail "insmod $m"
done

[ -n "$v2guest_repo" ] && [ -n "$v2guest_out" ] || fail "v2guest_repo/v2guest_out missing on the command line"

mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower \
    || fail "mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "mount the overlay tmpfs"
mkdir -p /upper/data /upper/work
# index/xino/metacopy/redirect_dir off: the lower layer is a 9p tree whose inode numbers and
# xattrs cannot back those features.
mount -t overlay overlay \
    -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work,index=off,xino=off,metacopy=off,redirect_dir=off \
    /newroot || fail "mount the overlay root"

mkdir -p "/newroot$v2guest_out" || fail "mkdir $v2guest_out"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=262144 v2out "/newroot$v2guest_out" \
    || fail "mount the result share"

for d in proc sys dev; do
    mount --move "/$d" "/newroot/$d" || fail "move /$d"
done
if [ "$v2guest_init" = systemd ]; then
    # What run.py put in the result share's root/ (v2guest.target, v2guest-tests.service, dbus
    # drop-ins, generator masks, links for module loading) goes into the overlay's upper layer,
    # a tmpfs: the host's /etc is untouched.  systemd wants a machine id; a root without one gets a random one here rather
    # than systemd's first-boot handling.
    cp -a "/newroot$v2guest_out/root/." /newroot/ || fail "install the units"
    if [ ! -s /newroot/etc/machine-id ]; then
        tr -d - </proc/sys/kernel/random/uuid >/newroot/etc/machine-id || fail "write /etc/machine-id"
    fi
    # This machine's / carries docker's marker file: systemd would take the guest for a docker
    # container and then ignore the kernel command line (systemd.unit=, ...) and boot the host's
    # default.target.  Hide it (and podman's) in the overlay.
    rm -f /newroot/.dockerenv /newroot/run/.containerenv || fail "hide the container marker files"
    exec switch_root /newroot /lib/systemd/systemd
fi
exec switch_root /newroot /usr/bin/python3 -I "$v2guest_repo/integration/v2guest/guest.py" "$v2guest_out"
