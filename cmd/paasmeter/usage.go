package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/usage"
)

func (a *app) usageCmd() *cobra.Command {
	var tenant, node, container string
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a valid usage batch (one record per container meter) for the last full minute",
		Long: `Print a valid usage batch: one record per container meter for the last full
minute, with ids derived as the contract requires. Pipe it to the collector:

  paasmeter usage example --tenant caami --node node-1 | curl -H "Authorization: Bearer $TOKEN" \
      --data-binary @- http://127.0.0.1:8080/api/v1/usage`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			start := a.clock.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
			// A container at a quarter of a CPU and 256 MiB of its 512 MiB limit.
			quantities := map[usage.Meter]int64{
				usage.MeterCPU: 15e9, usage.MeterMemory: 256 << 20 * 60, usage.MeterMemoryLimit: 512 << 20 * 60,
				usage.MeterCPULimit: 1000 * 60, usage.MeterNetRx: 1_200_000, usage.MeterNetTx: 350_000,
				usage.MeterContainerSeconds: 60,
			}
			var recs []usage.Record
			for _, mi := range usage.Meters {
				if mi.SourceKind != usage.SourceContainer {
					continue
				}
				r := usage.Record{
					SchemaVersion: usage.SchemaVersion, Tenant: tenant, Project: "claims", App: "pricing",
					Environment: usage.EnvProd, ContainerID: container, RunID: container + "-1", Node: node,
					Meter: mi.Meter, Quantity: quantities[mi.Meter], WindowStart: start, WindowEnd: start.Add(time.Minute),
				}
				r.SetID()
				recs = append(recs, r)
			}
			if err := usage.EncodeBatch(a.stdout, recs); err != nil {
				return fmt.Errorf("write batch: %w", err)
			}
			return nil
		},
	}
	example.Flags().StringVar(&tenant, "tenant", "caami", "tenant (institution) of the records")
	example.Flags().StringVar(&node, "node", "node-1", "node the records come from (must match the agent token)")
	example.Flags().StringVar(&container, "container", "3f2a9c0d1b7e", "container id")
	return group("usage", "Work with usage records", "", example, &cobra.Command{
		Use:   "meters",
		Short: "List the meters and their base units",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			for _, mi := range usage.Meters {
				fmt.Fprintf(a.stdout, "%-28s %-12s %-9s %s\n", mi.Meter, mi.BaseUnit, mi.SourceKind, mi.Help)
			}
		},
	})
}
