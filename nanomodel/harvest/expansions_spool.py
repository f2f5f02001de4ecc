"""Lines the print scheduler and the MTA assemble for their spooled jobs and messages,
written out once per variant (see :mod:`nanomodel.harvest.expansions_classic` for the row
format): cupsd's job-state messages, which ``cupsdSetJobState`` logs with the job id, and
sendmail's ``from=``/``to=`` lines, which ``logsender``/``logdelivery`` build from pieces."""

from __future__ import annotations

Row = tuple[str, str, str, str, str, str]


def cups_rows() -> list[Row]:
    """cupsdSetJobState() logs the job's new state message as ``[Job N] <message>``: at
    error for a stopped or aborted job, at info otherwise (``scheduler/job.c``); the
    messages are literals assigned elsewhere, some with the ErrorLog path (Debian's
    ``/var/log/cups/error_log``) written in."""
    consult = "please consult the /var/log/cups/error_log file for details."
    backend = "the printer's backend failed (printer unreachable, refused or broken connection): "
    return [
        (
            "scheduler/job.c",
            '"Job completed."',
            "[Job %d] Job completed.",
            "info",
            "normal",
            "a print job finished",
        ),
        (
            "scheduler/job.c",
            '"Job canceled."',
            "[Job %d] Job canceled.",
            "info",
            "normal",
            "a print job canceled by its user or an administrator",
        ),
        (
            "scheduler/job.c",
            '"Job held."',
            "[Job %d] Job held.",
            "info",
            "normal",
            "a print job held as its user asked",
        ),
        (
            "scheduler/job.c",
            '"Job paused."',
            "[Job %d] Job paused.",
            "info",
            "normal",
            "a print job paused",
        ),
        (
            "scheduler/job.c",
            '"Job canceled at printer."',
            "[Job %d] Job canceled at printer.",
            "info",
            "normal",
            "a print job canceled on the printer's panel",
        ),
        (
            "scheduler/job.c",
            '"Job held for authentication."',
            "[Job %d] Job held for authentication.",
            "info",
            "normal",
            "a job waiting for its user's credentials for the printer",
        ),
        (
            "scheduler/job.c",
            '"Retrying job on same printer."',
            "[Job %d] Retrying job on same printer.",
            "info",
            "normal",
            "a job retried after a printer hiccup (ErrorPolicy retry-job); a printer that keeps "
            "failing is reported by its stop",
        ),
        (
            "scheduler/job.c",
            '"Printer stopped due to backend errors; please consult',
            f"[Job %d] Printer stopped due to backend errors; {consult}",
            "error",
            "network",
            backend + "CUPS stops the queue and nothing prints until someone restarts it",
        ),
        (
            "scheduler/job.c",
            '"Job aborted due to backend errors; please consult',
            f"[Job %d] Job aborted due to backend errors; {consult}",
            "error",
            "network",
            backend + "the job is lost",
        ),
        (
            "scheduler/job.c",
            '"Job held indefinitely due to backend errors; please consult',
            f"[Job %d] Job held indefinitely due to backend errors; {consult}",
            "info",
            "network",
            backend + "the job waits until someone releases it",
        ),
        (
            "scheduler/job.c",
            '"Job stopped due to filter errors; please consult',
            f"[Job %d] Job stopped due to filter errors; {consult}",
            "error",
            "software",
            "the printer driver's filter failed on the job: nothing of it prints",
        ),
        (
            "scheduler/job.c",
            '"Aborting job because it cannot be printed."',
            "[Job %d] Aborting job because it cannot be printed.",
            "error",
            "software",
            "no filter chain converts the document for this printer (a driver missing): the job "
            "is lost",
        ),
        (
            "scheduler/job.c",
            '"Stopping job because the scheduler ran out of memory."',
            "[Job %d] Stopping job because the scheduler ran out of memory.",
            "error",
            "software",
            "cupsd ran out of memory",
        ),
    ]


def sendmail_rows() -> list[Row]:
    """sendmail's per-message lines: logsender() writes ``from=..., size=..., nrcpts=...,
    msgid=..., proto=..., daemon=..., relay=...`` and logdelivery() ``to=..., delay=...,
    mailer=..., pri=..., relay=..., dsn=..., stat=...`` from pieces (``headers.c``,
    ``deliver.c``); each variant here is one a queue file's life writes."""
    head = "%{qid}: "
    to_smtp = "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s. [%s], "
    routine = "a message delivered or taken in: the mail server's routine"
    rows: list[Row] = [
        (
            "sendmail/headers.c",
            '"from=%.200s, size=%ld, class=%d, nrcpts=%d"',
            head + "from=<%s>, size=%ld, class=%d, nrcpts=%d, msgid=<%s>, proto=ESMTP, "
            "daemon=MTA-v4, relay=%s [%s]",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/headers.c",
            '"from=%.200s, size=%ld, class=%d, nrcpts=%d"',
            head + "from=<%s>, size=%ld, class=%d, nrcpts=%d, msgid=<%s>, relay=%s@localhost",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + to_smtp + "dsn=2.0.0, stat=Sent (%s)",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, ctladdr=<%s> (%d/%d), delay=%s, xdelay=%s, mailer=local, pri=%ld, "
            "dsn=2.0.0, stat=Sent",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s., dsn=4.0.0, "
            "stat=Deferred: Connection refused by %s.",
            "info",
            "normal",
            "a remote mail server refuses connections: the message stays queued and is retried; "
            "routine on a mail server",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s. [%s], "
            "dsn=4.0.0, stat=Deferred: Connection timed out with %s.",
            "info",
            "normal",
            "a remote mail server does not answer: the message stays queued and is retried; "
            "routine on a mail server",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, mailer=esmtp, pri=%ld, dsn=5.1.1, stat=User unknown",
            "info",
            "normal",
            "mail for an address that does not exist bounces: routine",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, mailer=esmtp, pri=%ld, dsn=4.4.3, stat=Deferred: Name "
            "server: %s: host name lookup failure",
            "info",
            "network",
            "this server cannot resolve mail hosts' names: outgoing mail stalls in the queue",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=local, pri=%ld, dsn=4.0.0, "
            "stat=Deferred: local mailer (%s) exited with EX_TEMPFAIL",
            "info",
            "software",
            "local delivery fails (the local mailer cannot write the mailbox): mail waits in "
            "the queue",
        ),
    ]
    return rows


__all__ = ["cups_rows", "sendmail_rows"]
