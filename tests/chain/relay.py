#!/usr/bin/python3
"""Tiny SMTP relay for the local chain: Dovecot submission -> LMTP delivery.

Dovecot's submission service only relays (submission_relay_host) and its
LMTP server refuses EHLO/HELO ("500 5.5.1 Unknown command"), so submission
cannot point at LMTP directly. This relay accepts SMTP on loopback and hands
each message to Dovecot's LMTP, one LMTP transaction per recipient (Python's
smtplib.LMTP reads one DATA reply only, LMTP sends one per recipient).

    /usr/bin/python3 tests/chain/relay.py --listen 127.0.0.1:PORT \
        --lmtp 127.0.0.1:PORT    (or --lmtp /path/to/lmtp.sock)

Needs the Debian package python3-aiosmtpd (use Debian's /usr/bin/python3).
Runs in the foreground until SIGTERM/SIGINT; one log line per recipient on
stderr. Test use only: no authentication, no queue, no retries.
"""

import argparse
import asyncio
import signal
import smtplib
import sys

from aiosmtpd.smtp import SMTP


def parse_hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


def log(text):
    print("relay: " + text, file=sys.stderr, flush=True)


class LmtpRelay:
    def __init__(self, lmtp):
        self.lmtp = lmtp  # (host, port) or a unix socket path

    def _deliver_one(self, mail_from, rcpt, content):
        if isinstance(self.lmtp, str):
            client = smtplib.LMTP(self.lmtp)
        else:
            client = smtplib.LMTP(self.lmtp[0], self.lmtp[1])
        try:
            client.sendmail(mail_from, [rcpt], content)
            return 250, "2.0.0 delivered"
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[rcpt]
            return code, text.decode(errors="replace")
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")
        finally:
            try:
                client.quit()
            except smtplib.SMTPException:
                client.close()

    def deliver(self, mail_from, rcpts, content):
        """Returns the SMTP reply for the client's DATA."""
        worst = None
        for rcpt in rcpts:
            try:
                code, text = self._deliver_one(mail_from, rcpt, content)
            except (OSError, smtplib.SMTPException) as e:
                code, text = 451, "4.4.0 LMTP unavailable: %s" % e
            log("from=<%s> to=<%s> lmtp=%d %s" % (mail_from, rcpt, code, text))
            if code >= 400 and (worst is None or code > worst[0]):
                worst = (code, text)
        if worst is None:
            return "250 OK delivered"
        return "%d %s" % worst

    async def handle_DATA(self, server, session, envelope):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self.deliver, envelope.mail_from, list(envelope.rcpt_tos),
            envelope.original_content or envelope.content)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=parse_hostport, required=True,
                    help="HOST:PORT to accept SMTP on")
    ap.add_argument("--lmtp", required=True,
                    help="Dovecot LMTP: HOST:PORT or a unix socket path")
    args = ap.parse_args()
    lmtp = args.lmtp if args.lmtp.startswith("/") else parse_hostport(args.lmtp)

    handler = LmtpRelay(lmtp)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.dovegate.test",
                     decode_data=False),
        host=args.listen[0], port=args.listen[1])
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log("listening on %s:%d, delivering to LMTP %s" %
        (args.listen[0], args.listen[1], args.lmtp))
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
