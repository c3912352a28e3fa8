#!/bin/sh
# needled itself with backend = "linux" (crates/needled/tests/vm_needled.rs).
export NEEDLE_VM_GUEST=1 RUST_BACKTRACE=1 NEEDLE_VM_NEEDLED=/share/bin/needled
cd /tmp
/share/bin/vm_needled --test-threads=1 --nocapture
