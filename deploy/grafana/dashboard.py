"""The Ebbtide Grafana dashboard, generated with Grafana's grafana-foundation-sdk.

``python deploy/grafana/dashboard.py > deploy/grafana/ebbtide.json`` writes the committed JSON;
``tests/unit/deploy/test_grafana_dashboard.py`` checks that the two agree, and
``tests/integration/test_prometheus_run.py`` runs every panel's query against a real Prometheus
scraping a real worker and sink. Import the JSON into Grafana
(Dashboards > New > Import) and pick the Prometheus data source that scrapes the jobs of
``deploy/prometheus/prometheus.yml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, TooltipDisplayMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"  # Grafana's window for rate() and increase(): a few scrape intervals
DUTIES = 'kind=~"DUTY_.*"'
HOLD_EVENTS = 'type=~"LegalHold.*"'


@dataclass(frozen=True)
class Chart:
    """One panel: its title, what it shows, its unit and its queries (PromQL -> legend)."""

    title: str
    description: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    stat: bool = False


ROWS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    (
        "Events and lag",
        (
            Chart(
                "Events in, by type",
                "Lifecycle events the worker consumed per second.",
                "ops",
                ((f"sum by (type) (rate(ebbtide_events_consumed_total[{RATE}]))", "{{type}}"),),
            ),
            Chart(
                "Ticks waiting for events (lag), by partition",
                "Clock ticks held until the events published before them are processed: the "
                "worker is behind on the events topic (EbbtideTicksDeferred above 10).",
                "short",
                (("max by (partition) (ebbtide_ticks_deferred)", "partition {{partition}}"),),
            ),
            Chart(
                "Pipeline clock behind wall time",
                "Seconds between now and the pipeline clock of the slowest partition (the last "
                "tick applied); grows when the clock stalls (EbbtideClockStalled).",
                "s",
                (("time() - min(ebbtide_clock_time_seconds)", "behind"),),
            ),
        ),
    ),
    (
        "Deadlines and deletions",
        (
            Chart(
                "Pending deadlines, by category",
                "Records waiting for their deadline (nothing suspending it), summed over the workers.",
                "short",
                (("sum by (category) (ebbtide_records_waiting)", "{{category}}"),),
            ),
            Chart(
                "Pending deadlines, by partition",
                "Records waiting for their deadline, per partition the workers hold.",
                "short",
                (("sum by (partition) (ebbtide_pending_deadlines)", "partition {{partition}}"),),
            ),
            Chart(
                "Records stamped, by category",
                "Records given a deadline per second, by category.",
                "ops",
                ((f"sum by (category) (rate(ebbtide_records_stamped_total[{RATE}]))", "{{category}}"),),
            ),
            Chart(
                "Deletions due, sent and confirmed",
                "Deletions ordered (deadline passed), commands sent (re-sent ones included) and "
                "deletions confirmed by the stores, per second.",
                "ops",
                (
                    (
                        f'sum(rate(ebbtide_decisions_total{{kind="DELETION_ORDERED"}}[{RATE}]))',
                        "due (ordered)",
                    ),
                    (f"sum by (store) (rate(ebbtide_commands_sent_total[{RATE}]))", "sent {{store}}"),
                    (
                        f'sum by (store) (rate(ebbtide_receipts_total{{outcome!="FAILED"}}[{RATE}]))',
                        "confirmed {{store}}",
                    ),
                ),
            ),
            Chart(
                "Awaiting a receipt and overdue, by store",
                "Copies ordered and not answered yet, and of those the ones past the store's "
                "service level (EbbtideDeletionsOverdue; `ebbtide overdue --store S`).",
                "short",
                (
                    ("sum by (store) (ebbtide_deletions_awaiting_receipt)", "awaiting {{store}}"),
                    ("sum by (store) (ebbtide_deletions_overdue)", "overdue {{store}}"),
                ),
            ),
            Chart(
                "Receipts, by outcome",
                "Store answers the worker consumed per second (FAILED: ordered again; "
                "EbbtideDeletionFailed).",
                "ops",
                ((f"sum by (outcome) (rate(ebbtide_receipts_total[{RATE}]))", "{{outcome}}"),),
            ),
        ),
    ),
    (
        "Certificates, duties and holds",
        (
            Chart(
                "Certificates, by result",
                "Deletion certificates found due: issued (signed, published), deferred (signing "
                "failed, tried again) or unsigned (no signer).",
                "short",
                ((f"sum by (result) (increase(ebbtide_certificates_total[{RATE}]))", "{{result}}"),),
            ),
            Chart(
                "Certificates waiting for a signature",
                "Certificates due and held because signing failed (EbbtideCertificatesUnsigned).",
                "short",
                (("max(ebbtide_certificates_unsigned)", "unsigned"),),
                stat=True,
            ),
            Chart(
                "Duties open, by duty",
                "Duties not done yet, overdue ones included (erasure answers, export offers, breach "
                "notices).",
                "short",
                (("sum by (duty) (ebbtide_duties_open)", "{{duty}}"),),
            ),
            Chart(
                "Duties opened, done and overdue",
                "Duties (erasure answers, export offers, breach notices) opened, done and reported "
                "overdue in each interval.",
                "short",
                (
                    (
                        f'sum by (kind) (increase(ebbtide_decisions_total{{kind=~"DUTY_.*"}}[{RATE}]))',
                        "{{kind}}",
                    ),
                ),
            ),
            Chart(
                "Duties overdue, by duty",
                "DUTY_OVERDUE decisions per duty in each interval (EbbtideDutyOverdue).",
                "short",
                ((f"sum by (duty) (increase(ebbtide_duties_overdue_total[{RATE}]))", "{{duty}}"),),
            ),
            Chart(
                "Records kept by legal holds, by category",
                "Records a legal hold keeps from deletion, summed over the workers.",
                "short",
                (("sum by (category) (ebbtide_records_held)", "{{category}}"),),
            ),
            Chart(
                "Legal hold events",
                "Legal hold events placed and released, and the records they held and released, in "
                "each interval.",
                "short",
                (
                    (
                        f"sum by (type) (increase(ebbtide_events_consumed_total{{{HOLD_EVENTS}}}[{RATE}]))",
                        "{{type}}",
                    ),
                    (
                        f'sum by (kind) (increase(ebbtide_decisions_total{{kind=~"HELD|RELEASED"}}[{RATE}]))',
                        "records {{kind}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Dead letters and refusals",
        (
            Chart(
                "Dead letters, by source and reason",
                "Messages sent to the DLQ in each interval (EbbtideDeadLetters; `ebbtide dlq list`).",
                "short",
                (
                    (
                        f"sum by (source, reason) (increase(ebbtide_dlq_messages_total[{RATE}]))",
                        "{{source}} {{reason}}",
                    ),
                ),
            ),
            Chart(
                "Refused as not authentic, by source and kind",
                "Messages refused by a signature or plausibility check (EbbtideSecurityEvents).",
                "short",
                (
                    (
                        f"sum by (source, kind) (increase(ebbtide_security_events_total[{RATE}]))",
                        "{{source}} {{kind}}",
                    ),
                ),
            ),
            Chart(
                "Processing errors, by source",
                "Records the policy engine raised on (dead-lettered; clock: tried again).",
                "short",
                ((f"sum by (source) (increase(ebbtide_processing_errors_total[{RATE}]))", "{{source}}"),),
            ),
        ),
    ),
    (
        "Sinks and processes",
        (
            Chart(
                "Sink commands, by store and outcome",
                "Deletion commands executed by the sinks per second.",
                "ops",
                (
                    (
                        f"sum by (store, outcome) (rate(ebbtide_sink_commands_total[{RATE}]))",
                        "{{store}} {{outcome}}",
                    ),
                ),
            ),
            Chart(
                "Rows deleted, by store",
                "Rows the sinks deleted per second (first executions).",
                "ops",
                ((f"sum by (store) (rate(ebbtide_rows_deleted_total[{RATE}]))", "{{store}}"),),
            ),
            Chart(
                "Sink batch time (95th percentile), by store",
                "Time to execute and commit one batch of commands.",
                "s",
                (
                    (
                        "histogram_quantile(0.95, sum by (store, le) "
                        f"(rate(ebbtide_sink_batch_seconds_bucket[{RATE}])))",
                        "{{store}}",
                    ),
                ),
            ),
            Chart(
                "Processes up",
                "1 while Prometheus scrapes the process (EbbtideProcessDown).",
                "short",
                (('up{job=~"ebbtide-.*"}', "{{job}} {{instance}}"),),
            ),
        ),
    ),
)


def _panel(chart: Chart) -> Stat | Timeseries:
    panel: Stat | Timeseries
    if chart.stat:
        panel = Stat().reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    else:
        legend = VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
        panel = (
            Timeseries()
            .legend(legend.placement(LegendPlacement.BOTTOM))
            .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI))
        )
    panel.title(chart.title).description(chart.description).unit(chart.unit).datasource(DATASOURCE)
    panel.height(8).span(8)
    for ref, (expr, series) in zip("ABCDEFGH", chart.queries, strict=False):
        panel.with_target(Dataquery().expr(expr).legend_format(series).ref_id(ref).datasource(DATASOURCE))
    return panel


def dashboard() -> Dashboard:
    """The dashboard's builder: one row per group of :data:`ROWS`, three panels a line."""
    board = (
        Dashboard("Ebbtide")
        .uid("ebbtide")
        .description("Retention deadlines and proven deletions: the worker, the sinks and the clock.")
        .tags(["ebbtide"])
        .refresh("1m")
        .time("now-6h", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for title, charts in ROWS:
        board.with_row(Row(title))
        for chart in charts:
            board.with_panel(_panel(chart))
    return board


def render() -> str:
    """The dashboard's JSON, as committed in ``deploy/grafana/ebbtide.json``."""
    return json.dumps(dashboard().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
