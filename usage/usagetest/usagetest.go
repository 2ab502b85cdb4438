// Package usagetest builds valid usage records for tests.
package usagetest

import (
	"time"

	"github.com/paasmeter/paasmeter/usage"
)

// Record returns a valid 60-second record of a container of tenant on node
// "node-1", project "claims", app "pricing", environment prod, with its id set.
// Tests that change a field the id depends on call SetID again.
func Record(tenant, container string, meter usage.Meter, start time.Time, quantity int64) usage.Record {
	r := usage.Record{
		SchemaVersion: usage.SchemaVersion,
		Tenant:        tenant,
		Project:       "claims",
		App:           "pricing",
		Environment:   usage.EnvProd,
		ContainerID:   container,
		RunID:         container + "-run1",
		Node:          "node-1",
		Meter:         meter,
		Quantity:      quantity,
		WindowStart:   start.UTC(),
		WindowEnd:     start.UTC().Add(time.Minute),
	}
	r.SetID()
	return r
}

// Volume returns a valid 60-second storage_byte_seconds record of a volume.
func Volume(tenant, volume string, start time.Time, quantity int64) usage.Record {
	r := Record(tenant, "", usage.MeterStorageByteSeconds, start, quantity)
	r.RunID, r.Volume = "", volume
	r.SetID()
	return r
}
