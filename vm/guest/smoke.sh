#!/bin/sh
# Smoke test: the rig's kernel interfaces are there.
set -e
ls /sys/kernel/config/gpio-sim
grep -H . /sys/bus/i2c/devices/i2c-*/name
ls /sys/class/pwm
cat /sys/devices/platform/needle-pwm-rig/applied
ls /dev/i2c-* 
