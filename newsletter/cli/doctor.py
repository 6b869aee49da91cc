"""``newsletter doctor``: every check for a real send, each with ok or what to do."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.options import adapter_option, db_option
from newsletter.errors import NewsletterError
from newsletter.project import Project


def _nameserver(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "53")
    host = host or value
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST or HOST:PORT", param_hint="--nameserver")
    return host, int(port)


@click.command()
@click.argument("issue", required=False, type=click.Path(path_type=Path))
@adapter_option
@db_option
@click.option("--allow-local-tracking", is_flag=True,
              help="Accept a tracking URL on this machine (tests): a warning, not a problem.")
@click.option("--nameserver", metavar="HOST[:PORT]",
              help="Ask this DNS server for SPF and DMARC (default: the system's).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds to wait for each answer (tracker, mail server, DNS).")
def doctor(issue: Path | None, adapter: str | None, db: str | None,
           allow_local_tracking: bool, nameserver: str | None, timeout: float) -> None:
    """Check that everything is ready for a real send of ISSUE (default: the issue file
    changed last): settings, the tracker (reachable over https, reading this database), the
    issue's images, the mail server's login, SPF and DMARC of the sender's domain, the
    unsubscribe address and List-Id. Sends nothing. Exit code 1 when anything blocks sending.

    Example:

        newsletter doctor 2026-spring --adapter smtp
    """
    from newsletter import doctor as checks
    from newsletter.send import adapter_name

    project = Project.load()
    path = project.issue_path(issue) if issue is not None else checks.newest_issue(project)
    context = checks.Context(
        project=project, issue=path, adapter=adapter_name(adapter, project.settings.env),
        db_url=project.db_url(db), allow_local_tracking=allow_local_tracking,
        nameserver=_nameserver(nameserver), http_timeout=timeout, dns_timeout=timeout)
    results = checks.run(context)
    width = max(len(name) for name, _ in results)
    for name, finding in results:
        click.echo(f"{finding.status:<8} {name:<{width}}  {finding.message}")
        if finding.fix:
            click.echo(f"{'':<8} {'':<{width}}  what to do: {finding.fix}")
    problems = sum(1 for _, f in results if f.status == "problem")
    warnings = sum(1 for _, f in results if f.status == "warning")
    if problems:
        raise NewsletterError(f"{problems} problem(s) block a real send ({warnings} warning(s))",
                              hint="fix them and run `newsletter doctor` again")
    click.echo(f"Ready for a real send ({warnings} warning(s)).")


COMMANDS = [doctor]
