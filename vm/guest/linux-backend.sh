#!/bin/sh
# The linux backend's parts against gpio-sim and the rig modules (crates/needled/tests/vm_linux.rs).
export NEEDLE_VM_GUEST=1 RUST_BACKTRACE=1
cd /tmp
/share/bin/vm_linux --test-threads=1 --nocapture
