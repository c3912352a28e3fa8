// SPDX-License-Identifier: GPL-2.0
/*
 * needle_pwm_rig: a PWM chip for the needle pen's VM test rig. It drives nothing; it keeps
 * what the PWM core last asked it to apply, per channel, and shows that in
 * /sys/devices/platform/needle-pwm-rig/applied, one line per channel:
 *   <channel> period=<ns> duty=<ns> enabled=<0|1> polarity=<normal|inversed> applies=<n>
 * so a test can check what reached the driver rather than what the PWM core's sysfs echoes.
 */
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/pwm.h>
#include <linux/mutex.h>

#define NPWM 2

struct rig_pwm {
	struct pwm_chip chip;
	struct mutex lock;
	struct pwm_state applied[NPWM];
	unsigned long applies[NPWM];
};

static struct platform_device *rig_pdev;
static struct rig_pwm rig;

static int rig_apply(struct pwm_chip *chip, struct pwm_device *pwm,
		     const struct pwm_state *state)
{
	mutex_lock(&rig.lock);
	rig.applied[pwm->hwpwm] = *state;
	rig.applies[pwm->hwpwm]++;
	mutex_unlock(&rig.lock);
	return 0;
}

static int rig_get_state(struct pwm_chip *chip, struct pwm_device *pwm,
			 struct pwm_state *state)
{
	mutex_lock(&rig.lock);
	*state = rig.applied[pwm->hwpwm];
	mutex_unlock(&rig.lock);
	return 0;
}

static const struct pwm_ops rig_ops = {
	.apply = rig_apply,
	.get_state = rig_get_state,
	.owner = THIS_MODULE,
};

static ssize_t applied_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	int i, n = 0;

	mutex_lock(&rig.lock);
	for (i = 0; i < NPWM; i++)
		n += sysfs_emit_at(buf, n, "%d period=%llu duty=%llu enabled=%d polarity=%s applies=%lu\n",
				   i, rig.applied[i].period, rig.applied[i].duty_cycle,
				   rig.applied[i].enabled,
				   rig.applied[i].polarity == PWM_POLARITY_NORMAL ? "normal" : "inversed",
				   rig.applies[i]);
	mutex_unlock(&rig.lock);
	return n;
}
static DEVICE_ATTR_RO(applied);

static int __init rig_pwm_init(void)
{
	int ret;

	mutex_init(&rig.lock);
	rig_pdev = platform_device_register_simple("needle-pwm-rig", -1, NULL, 0);
	if (IS_ERR(rig_pdev))
		return PTR_ERR(rig_pdev);
	rig.chip.dev = &rig_pdev->dev;
	rig.chip.ops = &rig_ops;
	rig.chip.npwm = NPWM;
	ret = pwmchip_add(&rig.chip);
	if (ret)
		goto err_dev;
	ret = device_create_file(&rig_pdev->dev, &dev_attr_applied);
	if (ret)
		goto err_chip;
	return 0;
err_chip:
	pwmchip_remove(&rig.chip);
err_dev:
	platform_device_unregister(rig_pdev);
	return ret;
}

static void __exit rig_pwm_exit(void)
{
	device_remove_file(&rig_pdev->dev, &dev_attr_applied);
	pwmchip_remove(&rig.chip);
	platform_device_unregister(rig_pdev);
}

module_init(rig_pwm_init);
module_exit(rig_pwm_exit);
MODULE_DESCRIPTION("PWM chip of the needle pen VM test rig: records what is applied");
MODULE_LICENSE("GPL");
