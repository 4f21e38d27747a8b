"""Email summary: one plain-text mail per batch over SMTP (stdlib smtplib).

The Message-ID is derived from the batch id and the recipients: mail cannot be unsent, so a second
run of the same batch sends a mail with the same Message-ID, which mail systems and clients collapse.

Config:
  smtp_host          (required)
  smtp_port          default 587
  security           "starttls" (default), "ssl" or "none"
  username           (with password) log in when given
  password           (secret)
  from_addr          (required) sender address
  to_addrs           (required) list of recipient addresses
  subject_template   default "Batch {batch_id}: {succeeded}/{total} succeeded"
  only_on_failure    send only when some result failed (default false)
  max_listed_errors  failed requests listed in the body (default 20)
  timeout_seconds    default 15
"""

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler


def error_text(result: Dict[str, Any]) -> Optional[str]:
    error = result.get("error")
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        return str(inner.get("message") or inner.get("code") or error)
    if error:
        return str(error)
    status = (result.get("response") or {}).get("status_code")
    return None if status == 200 else f"HTTP {status}"


class EmailSummaryHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        for key in ("smtp_host", "from_addr"):
            if not isinstance(self.config.get(key), str) or not self.config.get(key):
                raise ValueError(f"{key} is required in config")
        self.host: str = self.config["smtp_host"]
        self.from_addr: str = self.config["from_addr"]
        self.to_addrs = self.config.get("to_addrs")
        if not isinstance(self.to_addrs, list) or not self.to_addrs or not all("@" in str(a) for a in self.to_addrs):
            raise ValueError("to_addrs is required in config: a list of email addresses")
        self.port = self.config.get("smtp_port", 587)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError("smtp_port must be a port number")
        self.security = self.config.get("security", "starttls")
        if self.security not in ("starttls", "ssl", "none"):
            raise ValueError("security must be 'starttls', 'ssl' or 'none'")
        self.username = self.config.get("username")
        self.password = self.config.get("password")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password must be given together")
        self.subject_template = str(
            self.config.get("subject_template", "Batch {batch_id}: {succeeded}/{total} succeeded")
        )
        try:
            self.subject_template.format(batch_id="b", succeeded=0, failed=0, total=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"subject_template may use {{batch_id}} {{succeeded}} {{failed}} {{total}}: {exc}"
            ) from None
        self.only_on_failure = bool(self.config.get("only_on_failure", False))
        self.max_listed = int(self.config.get("max_listed_errors", 20))
        self.timeout = float(self.config.get("timeout_seconds", 15))

    def name(self) -> str:
        return "email_summary"

    def message(self, batch_id: str, results: List[Dict[str, Any]]) -> EmailMessage:
        failures = [(r.get("custom_id"), text) for r in results if (text := error_text(r)) is not None]
        counts = {"total": len(results), "failed": len(failures), "succeeded": len(results) - len(failures)}
        lines = [f"Batch {batch_id} finished.", "", *(f"{k}: {v}" for k, v in counts.items())]
        if failures:
            lines += ["", "Failed requests:"] + [f"- {cid}: {text}" for cid, text in failures[: self.max_listed]]
            if len(failures) > self.max_listed:
                lines.append(f"... and {len(failures) - self.max_listed} more")
        msg = EmailMessage()
        msg["Subject"] = self.subject_template.format(batch_id=batch_id, **counts)
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = formatdate(localtime=False)
        domain = self.from_addr.rpartition("@")[2] or "rh-host"
        key = hashlib.sha256(f"{batch_id}\0{','.join(sorted(self.to_addrs))}".encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<batch-{key}@{domain}>"
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        msg = self.message(batch_id, results)
        if self.only_on_failure and "failed: 0" in msg.get_content():
            self.logger.info("no failures; no mail sent", extra={"batch_id": batch_id})
            return {"email_sent": False}
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            self.logger.error(f"sending the summary failed: {exc}", extra={"batch_id": batch_id, "host": self.host})
            return False
        delivered = len(self.to_addrs) - len(refused)
        self.logger.info(
            "summary mailed", extra={"batch_id": batch_id, "recipients": delivered, "refused": sorted(refused)}
        )
        return {"email_sent": True, "email_recipients": delivered, "email_message_id": str(msg["Message-ID"])}
