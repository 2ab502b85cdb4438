// Package usagetest builds valid usage records for tests.
package usagetest

import (
	"fmt"
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

// HourlyMemory produces containers × hours records of memory_byte_seconds, one
// per container and hour from start, each of bytes held for the whole hour,
// and passes them to fn in batches of batchSize. received is their received_at.
func HourlyMemory(tenant string, containers, hours int, start time.Time, bytes int64, batchSize int, received time.Time,
	fn func([]usage.Record) error) error {
	batch := make([]usage.Record, 0, batchSize)
	for c := range containers {
		for h := range hours {
			r := Record(tenant, fmt.Sprintf("c%05d", c), usage.MeterMemory, start.Add(time.Duration(h)*time.Hour), bytes*3600)
			r.WindowEnd = r.WindowStart.Add(time.Hour)
			r.SetID()
			r.ReceivedAt = received
			batch = append(batch, r)
			if len(batch) == batchSize {
				if err := fn(batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}
