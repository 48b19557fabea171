/* i18n: gettext for what a person reads at the terminal (--help, usage
 * and configuration errors, the CLI's output).  Log messages stay in
 * English: tools key on MESSAGE_ID, and journal MESSAGE= is not
 * translated. */
#pragma once

#include <glib/gi18n.h>

/* Takes the locale from the environment (LC_ALL) but keeps numbers in
 * the C locale (LC_NUMERIC), so neither the wire, /metrics nor the config
 * parser ever sees a decimal comma; binds the "rtcsignald" domain to
 * $RTCSIGNALD_LOCALEDIR (tests, relocated installs) or LOCALEDIR. */
void i18n_init(void);
