#!/bin/sh
# The Pi jig's gpio-cdev and i2c-dev instruments (hil-tests/tests/vm_pi_jig.rs).
export NEEDLE_VM_GUEST=1 RUST_BACKTRACE=1
cd /tmp
# A task stuck in the kernel: its stack on the console after 15 s.
echo 15 > /proc/sys/kernel/hung_task_timeout_secs
echo 7 > /proc/sys/kernel/printk
/share/bin/vm_pi_jig --test-threads=1 --nocapture
