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

# The systemd unit, with the paths of this build (conf.d's copy says
# /usr/sbin and /etc: ./configure --prefix=/usr --sysconfdir=/etc, as the
# Debian packages are built). Installed to systemd's unit directory unless
# configure was given --without-systemdsystemunitdir.
if SYSTEMD_UNIT
systemdsystemunit_DATA = src/dovegate-auth.service
endif
src/dovegate-auth.service: $(top_srcdir)/conf.d/systemd/dovegate-auth.service Makefile
	$(AM_V_GEN)$(MKDIR_P) src && \
	sed -e 's|/usr/sbin/dovegate-auth|$(sbindir)/dovegate-auth|g' \
	    -e 's|/etc/dovegate/|$(sysconfdir)/dovegate/|g' \
	    -e 's|/usr/share/doc/dovegate/|$(docdir)/|g' \
	    $(top_srcdir)/conf.d/systemd/dovegate-auth.service > $@.tmp && mv $@.tmp $@
CLEANFILES += src/dovegate-auth.service
