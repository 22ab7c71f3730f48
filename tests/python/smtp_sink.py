"""A real SMTP server on loopback for the tests (aiosmtpd): every message it accepts is parsed
with Python's email package and written as one JSON file (written aside, then renamed in) to the
output directory, which the test reads. Prints "ready" once it accepts connections.

Usage: smtp_sink.py HOST PORT OUT_DIR
"""
import json
import os
import signal
import sys
import time
import uuid
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        msg = BytesParser(policy=policy.default).parsebytes(envelope.content)
        html, text, attachments = None, None, []
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                attachments.append({
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "hex": part.get_payload(decode=True).hex(),
                })
            elif part.get_content_type() == "text/html":
                html = part.get_content()
            elif part.get_content_type() == "text/plain":
                text = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": str(msg.get("Message-ID", "")),
            "subject": str(msg.get("Subject", "")),
            "to": str(msg.get("To", "")),
            "html": html,
            "text": text,
            "attachments": attachments,
        }
        name = f"{time.time_ns()}-{uuid.uuid4().hex}"
        tmp = os.path.join(self.out, f".{name}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"{name}.json"))
        return "250 Message accepted for delivery"


def main():
    host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    controller = Controller(Sink(out), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (controller.stop(), sys.exit(0)))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
