package billing

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"hash"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// TestAnInvoiceDigestedSequentiallyStillVerifies: invoices issued before
// digest_version carry the sequential sha-256 of their records in store
// order (computed here from its definition, not by the code under test);
// they still re-derive bit for bit, by a row scan, and still catch a
// changed record. New invoices carry the order-independent sum.
func TestAnInvoiceDigestedSequentiallyStillVerifies(t *testing.T) {
	ctx := context.Background()
	f := newCompatFixture(t)
	inv, err := f.svc.Document(ctx, f.number)
	if err != nil {
		t.Fatal(err)
	}
	if v := inv.Inputs.Months[0].DigestVersion; v != DigestVersion {
		t.Fatalf("a new invoice has digest_version %d, want %d", v, DigestVersion)
	}
	loc := f.svc.cfg.Location
	month := sha256.New()
	days := map[string]hash.Hash{}
	err = f.ms.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: time.Date(2026, 11, 1, 0, 0, 0, 0, loc), To: time.Date(2026, 12, 1, 0, 0, 0, 0, loc)},
		func(r usage.Record) error {
			b := binary.AppendUvarint([]byte(r.ID), uint64(r.Quantity))
			b = binary.AppendVarint(b, r.ReceivedAt.UnixNano())
			month.Write(b)
			d := r.WindowStart.In(loc).Format(time.DateOnly)
			if days[d] == nil {
				days[d] = sha256.New()
			}
			days[d].Write(b)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	f.rewrite(t, f.number, func(old *Invoice) {
		m := &old.Inputs.Months[0]
		m.DigestVersion, m.Digest = 0, fmt.Sprintf("%x", month.Sum(nil))
		for d, b := range m.Days {
			b.Digest = fmt.Sprintf("%x", days[d].Sum(nil)[:dayDigestLen])
			m.Days[d] = b
		}
	})
	if err := f.svc.Verify(ctx, f.number); err != nil {
		t.Errorf("verify an invoice digested sequentially: %v", err)
	}
	mdb, err := sql.Open("sqlite3", "file:"+f.ms.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	if _, err := mdb.Exec(`UPDATE usage_records SET received_at = received_at + 1
		WHERE window_start = (SELECT min(window_start) FROM usage_records)`); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Verify(ctx, f.number); err == nil {
		t.Error("verify passed an invoice digested sequentially after a record's arrival changed")
	}
}
