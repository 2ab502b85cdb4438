package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/hub"
)

func (a *app) collectorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "collector",
		Short: "Run the collector: usage, event and log ingest, tenant-scoped queries",
		Long: `Run the collector. It serves two listeners:

  collector.listen        POST /api/v1/usage, /api/v1/events, /api/v1/logs (agent tokens),
                          POST /loki/api/v1/push (Loki clients), GET /api/v1/tenants/{tenant}/usage,
                          /logs, /invoices and /invoices/{number}.{format}, Loki's query_range,
                          labels and label values (institution or admin tokens),
                          /api/v1/maintenance (admin tokens), /healthz, /readyz
  collector.admin_listen  /metrics (and /debug/pprof/ with collector.pprof) for operators:
                          loopback only unless admin_tls and admin_token_sha256 are set

Either listener serves TLS with collector.tls / collector.admin_tls; with
collector.tls.client_ca_file, agents may authenticate with a client
certificate naming their node (node_certificates) instead of a token. With
collector.tls.client_auth require, agents connect to a third listener,
collector.agent_listen, with their certificate only. Every agent credential
writes only for the institutions its node may run (tenants).

Records and log lines are validated, deduplicated by id and stored in the
metering store: the embedded one under store.data_dir, or ClickHouse when
store.metering_dsn is a clickhouse:// DSN; a batch is acknowledged only after
it is durably stored. Operators' reads of tenant data are written to the access
log first (collector.access_log). With billing.rate_card configured, institutions
download their issued invoices and credit notes from the state store (store.state_dsn,
else the embedded one in store.data_dir). Admin tokens declare maintenance windows
(/api/v1/maintenance) in the same store; the windows of maintenance.windows are
stored at start, and those the rules refuse (declared too late, or a change of one
that started) are logged. Log lines older than their tenant's
log_retention are deleted every collector.logs.retention_interval.
SIGINT or SIGTERM stops it gracefully: in-flight batches finish first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runCollector(cmd.Context())
		},
	}
}

func (a *app) runCollector(ctx context.Context) (err error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	h, err := hub.Open(ctx, cfg, a.hubOptions(a.logger(cfg)), hub.Collector)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, h.Close()) }()
	return h.CollectorServer().Run(ctx, nil)
}
