# shellcheck shell=bash
# lab_qemu_command NAME DIR TAP MAC VM_PORT FIRMWARE [ACCEL]: the QEMU command of one lab machine,
# one argument a line (the program first), for its BMC's chassis program (scripts/lab/chassis.sh)
# to run. The Rust tests that boot machines build theirs with tests/common/qemu.rs.
#
# NAME is the machine's name, DIR its directory (QEMU's pid file, serial log, disk and OVMF
# variable store are there), TAP its tap device, MAC its NIC's address, VM_PORT the port of its
# BMC's VM serial interface on 127.0.0.1, FIRMWARE bios or uefi, ACCEL QEMU's accelerator (tcg).
# Needs OVMF_CODE set for uefi.
lab_qemu_command() {
    local name="$1" d="$2" tap="$3" mac="$4" vm_port="$5" firmware="$6" accel="${7:-tcg}"
    local args=(qemu-system-x86_64)
    # graphics=off: SeaBIOS and iPXE print on the serial port too (what -nographic does).
    # -cpu max: RDRAND, so the guest kernel's random generator is seeded at once as on a real
    # server (the agent will not make a BMC password from an unseeded one).
    args+=(-name "$name" -accel "$accel" -cpu max -m 1024 -display none -machine graphics=off)
    args+=(-nodefaults -monitor none)
    args+=(-daemonize -pidfile "$d/qemu.pid")
    args+=(-chardev "file,id=ser0,path=$d/serial.log,append=on" -serial chardev:ser0)
    args+=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no")
    args+=(-drive "file=$d/disk.raw,if=none,id=disk0,format=raw")
    args+=(-device "virtio-blk-pci,drive=disk0,bootindex=2")
    args+=(-chardev "socket,id=ipmi0,host=127.0.0.1,port=$vm_port,reconnect=10")
    args+=(-device "ipmi-bmc-extern,id=bmc0,chardev=ipmi0" -device "isa-ipmi-kcs,bmc=bmc0")
    if [ "$firmware" = uefi ]; then
        args+=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE")
        args+=(-drive "if=pflash,format=raw,file=$d/OVMF_VARS.fd")
        # No option ROM: the firmware's own UEFI PXE fetches snponly.efi over TFTP.
        args+=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=,bootindex=1")
        # The boot network is IPv4, as a rack's firmware is set up for it: without this, every
        # hand-over from iPXE to the disk first sits through OVMF's PXE-over-IPv6 timeout.
        args+=(-fw_cfg "name=opt/org.tianocore/IPv6PXESupport,string=no")
    else
        # SeaBIOS with the iPXE option ROM QEMU ships for virtio-net.
        args+=(-device "virtio-net-pci,netdev=n0,mac=$mac,bootindex=1")
    fi
    printf '%s\n' "${args[@]}"
}
