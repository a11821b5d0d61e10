# Example configuration installed to $(docdir)/examples.
examples_DATA += \
	conf.d/nginx/dovegate-mail.conf \
	conf.d/dovecot/dovegate.conf \
	conf.d/dovegate-auth.conf \
	conf.d/systemd/dovegate-auth.service
EXTRA_DIST += conf.d
