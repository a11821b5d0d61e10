# Example configuration installed to $(docdir)/examples.
examples_DATA += \
	conf.d/nginx/dovegate-mail.conf \
	conf.d/dovecot/dovegate-2.3.conf \
	conf.d/dovecot/dovegate-2.4.conf \
	conf.d/dovegate-auth.conf \
	conf.d/systemd/dovegate-auth.service \
	conf.d/fail2ban/dovegate-auth-filter.conf \
	conf.d/fail2ban/dovegate-auth-jail.conf
EXTRA_DIST += conf.d
