// SPDX-License-Identifier: GPL-2.0
/*
 * needle_i2c_rig: an I2C adapter (master_xfer, so I2C_RDWR works, unlike i2c-stub) for the
 * needle pen's VM test rig, emulating the rig's two devices:
 *
 * - 0x50: a 256-byte 24C02-style EEPROM (the cartridge tag). A write sets the word address
 *   (first byte) and stores the rest; a read returns bytes from the word address on,
 *   wrapping at 256. While the module parameter tag_present is 0 it does not acknowledge
 *   (-EREMOTEIO, as i2c-designware and i2c-bcm2835 report a NACK).
 * - 0x48: an ADS1115. Register pointer write, 16-bit big-endian registers 0 (conversion) and
 *   1 (config). Writing config with OS=1 converts at once: the conversion register gets the
 *   input selected by MUX (100..111 = AIN0..AIN3 single-ended) from the module parameter
 *   adc_uv (microvolts per input), scaled by the PGA full scale and clamped to 16 bits.
 *   Config reads back with OS=1 (not converting). In continuous mode (MODE = 0) every read
 *   of the conversion register converts the selected input anew.
 *
 * Any other address does not acknowledge. Parameters are writable under
 * /sys/module/needle_i2c_rig/parameters/. The adapter is named "needle-i2c-rig".
 */
#include <linux/module.h>
#include <linux/i2c.h>
#include <linux/mutex.h>

#define TAG_ADDR 0x50
#define ADC_ADDR 0x48

static bool tag_present = true;
module_param(tag_present, bool, 0644);
MODULE_PARM_DESC(tag_present, "the tag EEPROM at 0x50 acknowledges");

static int adc_uv[4];
static int adc_uv_n;
module_param_array(adc_uv, int, &adc_uv_n, 0644);
MODULE_PARM_DESC(adc_uv, "ADS1115 inputs AIN0..AIN3 in microvolts");

static unsigned long xfers;
module_param(xfers, ulong, 0444);
MODULE_PARM_DESC(xfers, "messages handled (read only)");

static DEFINE_MUTEX(rig_lock);
static u8 tag[256];
static u8 tag_ptr;
static u8 adc_ptr;
static u16 adc_config = 0x8583; /* the ADS1115's reset value */
static s16 adc_conversion;

static const int pga_full_scale_mv[8] = { 6144, 4096, 2048, 1024, 512, 256, 256, 256 };

static void adc_convert(void)
{
	int mux = (adc_config >> 12) & 7;
	int fs = pga_full_scale_mv[(adc_config >> 9) & 7];
	s64 raw = 0;

	if (mux >= 4)
		raw = div_s64((s64)adc_uv[mux - 4] * 32768, fs * 1000);
	adc_conversion = clamp_t(s64, raw, -32768, 32767);
}

static int tag_xfer(struct i2c_msg *m)
{
	int i;

	if (!tag_present)
		return -EREMOTEIO;
	if (m->flags & I2C_M_RD) {
		for (i = 0; i < m->len; i++)
			m->buf[i] = tag[tag_ptr++];
	} else if (m->len) {
		tag_ptr = m->buf[0];
		for (i = 1; i < m->len; i++)
			tag[tag_ptr++] = m->buf[i];
	}
	return 0;
}

static int adc_xfer(struct i2c_msg *m)
{
	u16 val;

	if (m->flags & I2C_M_RD) {
		/* Continuous mode (MODE = 0): every read sees the input as it is now. */
		if (adc_ptr == 0 && !(adc_config & 0x0100))
			adc_convert();
		val = adc_ptr == 0 ? (u16)adc_conversion : (adc_ptr == 1 ? adc_config : 0);
		if (m->len > 0)
			m->buf[0] = val >> 8;
		if (m->len > 1)
			m->buf[1] = val & 0xff;
		return 0;
	}
	if (m->len == 0)
		return 0;
	adc_ptr = m->buf[0] & 3;
	if (m->len >= 3 && adc_ptr == 1) {
		adc_config = ((u16)m->buf[1] << 8) | m->buf[2];
		if (adc_config & 0x8000)
			adc_convert();
		adc_config |= 0x8000;
	}
	return 0;
}

static int rig_master_xfer(struct i2c_adapter *adap, struct i2c_msg *msgs, int num)
{
	int i, ret = 0;

	mutex_lock(&rig_lock);
	for (i = 0; i < num && !ret; i++) {
		if (msgs[i].flags & I2C_M_TEN)
			ret = -EOPNOTSUPP;
		else if (msgs[i].addr == TAG_ADDR)
			ret = tag_xfer(&msgs[i]);
		else if (msgs[i].addr == ADC_ADDR)
			ret = adc_xfer(&msgs[i]);
		else
			ret = -EREMOTEIO;
		if (!ret)
			xfers++;
	}
	mutex_unlock(&rig_lock);
	return ret ? ret : num;
}

static u32 rig_functionality(struct i2c_adapter *adap)
{
	return I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL;
}

static const struct i2c_algorithm rig_algo = {
	.master_xfer = rig_master_xfer,
	.functionality = rig_functionality,
};

static struct i2c_adapter rig_adapter = {
	.owner = THIS_MODULE,
	.class = I2C_CLASS_HWMON,
	.algo = &rig_algo,
	.name = "needle-i2c-rig",
};

static int __init rig_i2c_init(void)
{
	return i2c_add_adapter(&rig_adapter);
}

static void __exit rig_i2c_exit(void)
{
	i2c_del_adapter(&rig_adapter);
}

module_init(rig_i2c_init);
module_exit(rig_i2c_exit);
MODULE_DESCRIPTION("I2C adapter of the needle pen VM test rig: tag EEPROM and ADS1115");
MODULE_LICENSE("GPL");
