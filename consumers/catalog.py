"""The integration catalog (file extensions) and the connector catalog (app pairs), as data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Integration:
    """An integration suggested for heavy use of files with `extension`."""

    extension: str
    tools: tuple[str, ...]
    name: str
    reasoning: str
    """Format string; receives `count` and `extension`."""
    sample: str


@dataclass(frozen=True)
class Connector:
    """An integration suggested when a user keeps moving from `source` to `target`."""

    source: str
    target: str
    name: str
    reasoning: str
    """Format string; receives `share` ("41%"), `lift` ("3.7"), `source` and `target`."""
    sample: str


_INTEGRATIONS: tuple[Integration, ...] = (
    Integration(
        "py",
        ("python",),
        "Dropbox sync of output files",
        "You worked on .{extension} files {count} times; syncing the files your scripts produce to "
        "Dropbox keeps results in one place without copying them by hand.",
        "import dropbox\n\ndbx = dropbox.Dropbox(TOKEN)\n"
        'dbx.files_upload(open("out.csv", "rb").read(), "/results/out.csv")',
    ),
    Integration(
        "js",
        ("nodejs",),
        "Webhook to external services",
        "You worked on .{extension} files {count} times; a webhook can push what your Node code "
        "produces to external services as it happens.",
        'await fetch(process.env.WEBHOOK_URL, { method: "POST", body: JSON.stringify(event) });',
    ),
    Integration(
        "sh",
        ("bash",),
        "Cron scheduling",
        "You worked on .{extension} files {count} times; scheduling your shell scripts with cron "
        "runs them for you.",
        "0 * * * * /usr/local/bin/your-script.sh >> /var/log/your-script.log 2>&1",
    ),
    Integration(
        "sql",
        ("database",),
        "Scheduled query with emailed results",
        "You worked on .{extension} files {count} times; a scheduled query can email you the "
        "results instead of you running it.",
        "select cron.schedule('daily-report', '0 8 * * *', $$select * from report$$);",
    ),
    Integration(
        "csv",
        ("spreadsheet",),
        "Import into a database",
        "You worked on .{extension} files {count} times; importing them into a database makes them "
        "queryable and keeps one copy.",
        "\\copy my_table from 'data.csv' with (format csv, header true)",
    ),
    Integration(
        "json",
        ("config",),
        "Validate and send to an API",
        "You worked on .{extension} files {count} times; validating them and sending them to an API "
        "catches mistakes before they ship.",
        "jsonschema.validate(doc, schema)\nrequests.post(API_URL, json=doc, timeout=10)",
    ),
    Integration(
        "md",
        ("documentation",),
        "Publish with a static site generator",
        "You worked on .{extension} files {count} times; a static site generator can publish your "
        "documentation on every change.",
        "mkdocs gh-deploy --force",
    ),
    Integration(
        "vba",
        ("word macro",),
        "Python processing of macro output",
        "You worked on .{extension} files {count} times; processing what your macros produce with "
        "Python automates the steps after them.",
        'import docx\n\ntext = "\\n".join(p.text for p in docx.Document("macro-output.docx").paragraphs)',
    ),
)

INTEGRATIONS: dict[str, Integration] = {}
for _integration in _INTEGRATIONS:
    INTEGRATIONS.setdefault(_integration.extension, _integration)  # the first one per extension wins

CONNECTORS: dict[tuple[str, str], Connector] = {
    (c.source, c.target): c
    for c in (
        Connector(
            "vscode",
            "slack",
            "Post commits and build results to Slack",
            "Lately {share} of your switches away from {source} went to {target}, {lift} times what "
            "chance would give; posting your commits and build results to a Slack channel saves the switch.",
            'requests.post(SLACK_WEBHOOK_URL, json={"text": f"Build {status}: {commit}"}, timeout=10)',
        ),
        Connector(
            "excel",
            "outlook",
            "Email spreadsheet reports automatically",
            "Lately {share} of your switches away from {source} went to {target}, {lift} times what "
            "chance would give; sending the workbook or its summary by email on a schedule saves the switch.",
            'mail = outlook.CreateItem(0)\nmail.Attachments.Add("report.xlsx")\nmail.Send()',
        ),
        Connector(
            "figma",
            "jira",
            "Create Jira issues from Figma comments",
            "Lately {share} of your switches away from {source} went to {target}, {lift} times what "
            "chance would give; turning design comments into Jira issues saves the switch.",
            'jira.create_issue(project="DES", summary=comment["message"], issuetype={"name": "Task"})',
        ),
    )
}


def integration_for(extension: str) -> Integration | None:
    return INTEGRATIONS.get(extension)


def connector_for(source: str, target: str) -> Connector | None:
    return CONNECTORS.get((source, target))
