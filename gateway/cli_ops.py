"""Operator commands: import, demo, unlock, disputes, export-audit."""
from __future__ import annotations

import sys

from .cli import arg, command
from .config import Config
from .services import build


PROGRESS_FROM = 2000  # rows; smaller files import in a blink


def _progress(done: int, total: int) -> None:
    """A progress line on stderr, redrawn in place, ended when the last row is written."""
    if total < PROGRESS_FROM:
        return
    width = 30
    filled = min(width, width * done // max(total, 1))
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows{end}")
    sys.stderr.flush()


@command(
    "import", "import centres, sessions or vaccinators from a CSV file",
    arg("kind", choices=("centres", "sessions", "vaccinators")),
    arg("file", help="CSV file with a header row (see README: CSV formats)"),
    arg("--skip-bad", action="store_true",
        help="import the good rows even when some rows are bad"),
)
def import_command(args, config: Config) -> int:
    """Validate every row, report bad ones with their line numbers, then upsert.

    Nothing is imported from a file with bad rows unless --skip-bad is given. Re-importing a
    file is safe. Vaccinators: an optional `active` column (1/0) deactivates a number.
    """
    from . import importer

    try:
        with open(args.file, newline="", encoding="utf-8-sig") as fh:
            services = build(config)
            report = importer.import_csv(services.redis, args.kind, fh, skip_bad=args.skip_bad,
                                         region=config.default_region, progress=_progress)
    except FileNotFoundError:
        print(f"error: no such file: {args.file}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"error: {args.file} is not UTF-8 text", file=sys.stderr)
        return 2
    if report.missing_columns:
        print(f"error: {args.file}: missing column(s): {', '.join(report.missing_columns)} "
              f"(expected: {','.join(importer.COLUMNS[args.kind])})", file=sys.stderr)
        return 1
    for line, reason in report.bad:
        print(f"{args.file}:{line}: {reason}", file=sys.stderr)
    if report.bad and not args.skip_bad:
        print(f"{len(report.bad)} bad row(s) of {report.rows}: nothing imported "
              "(fix them, or use --skip-bad to import the good rows)", file=sys.stderr)
        return 1
    skipped = f", skipped {len(report.bad)} bad row(s)" if report.bad else ""
    print(f"imported {report.imported} {args.kind} row(s) from {args.file}{skipped}")
    return 0


@command("demo", "load the demo centres, sessions (today + 7 days) and vaccinators")
def demo_command(args, config: Config) -> int:
    """Load a small demo data set (safe to run again) and print what to dial and type."""
    from . import demo
    from .conversation import now_in

    services = build(config)
    reports = demo.load(services, now_in(services).date())
    for kind, report in reports.items():
        print(f"demo: imported {report.imported} {kind} row(s)")
    print(demo.describe(services))
    return 0


@command("upgrade", "bring data written by an earlier release up to date (safe to run again)")
def upgrade_command(args, config: Config) -> int:
    """Seat rosters: appointments booked before sessions kept a roster of who holds each seat
    get their entry, so cancelling one gives its seat back. Run once after upgrading, before
    moving the data to a Redis Cluster."""
    from . import slots

    services = build(config)
    added = slots.build_rosters(services.redis, progress=lambda n: print(f"  {n} appointments looked at",
                                                                          file=sys.stderr))
    print(f"upgrade: {added} seat(s) added to session rosters")
    return 0


@command("unlock", "unlock an appointment locked after too many wrong codes", arg("ref"))
def unlock_command(args, config: Config) -> int:
    """Put a locked appointment back to booked with 5 fresh tries."""
    from flows.ids import parse_ref

    from . import operations

    ref = parse_ref(args.ref)
    if ref is None:
        print(f"error: {args.ref!r} is not a valid ref (10 digits, check the number)",
              file=sys.stderr)
        return 2
    message = operations.unlock(build(config), ref)
    print(message)
    return 0 if message.startswith("Unlocked") else 1


@command("disputes", "list appointments whose citizen replied NOTME")
def disputes_command(args, config: Config) -> int:
    """Each disputed appointment with its frozen certificate."""
    from . import operations
    from .phones import mask

    rows = operations.disputes(build(config))
    if not rows:
        print("no disputes")
        return 0
    for row in rows:
        print(f"{row['ref']}  {mask(row['phone'])}  {row['name']}  {row['centre']}  "
              f"{row['date']}  cert {row['cert_id'] or '-'}")
    print(f"{len(rows)} dispute(s)")
    return 0


@command("export-audit", "write the audit stream as JSON lines",
         arg("--output", "-o", default="-", help="file to write (default: standard output)"))
def export_audit_command(args, config: Config) -> int:
    """Every appointment change with who, which channel and when, oldest first."""
    from . import operations

    services = build(config)
    if args.output == "-":
        count = operations.export_audit(services, sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            count = operations.export_audit(services, out)
    print(f"exported {count} audit event(s)", file=sys.stderr)
    return 0
