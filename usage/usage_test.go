package usage_test

import (
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

var (
	now   = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	start = now.Add(-10 * time.Minute)
)

func TestDeriveID(t *testing.T) {
	base := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	tests := map[string]struct {
		change func(r *usage.Record)
		same   bool
	}{
		"a resend with another quantity keeps the id":        {func(r *usage.Record) { r.Quantity = 5 }, true},
		"another node changes the id":                        {func(r *usage.Record) { r.Node = "node-2" }, false},
		"another run changes the id":                         {func(r *usage.Record) { r.RunID = "abc-run2" }, false},
		"a resend with a received_at keeps the id":           {func(r *usage.Record) { r.ReceivedAt = now }, true},
		"the same instant in another time zone keeps the id": {func(r *usage.Record) { r.WindowStart = r.WindowStart.In(time.FixedZone("X", 3600)) }, true},
		"another container changes the id":                   {func(r *usage.Record) { r.ContainerID = "abd" }, false},
		"another meter changes the id":                       {func(r *usage.Record) { r.Meter = usage.MeterMemory }, false},
		"another window start changes the id":                {func(r *usage.Record) { r.WindowStart = r.WindowStart.Add(time.Nanosecond) }, false},
		"another window end changes the id":                  {func(r *usage.Record) { r.WindowEnd = r.WindowEnd.Add(-time.Second) }, false},
		"another tenant changes the id":                      {func(r *usage.Record) { r.Tenant = "ona" }, false},
		"a volume of the same name as a container differs": {func(r *usage.Record) {
			r.Meter, r.Volume, r.ContainerID = usage.MeterStorageByteSeconds, r.ContainerID, ""
		}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := base
			tc.change(&r)
			if got := usage.DeriveID(&r) == base.ID; got != tc.same {
				t.Errorf("same id = %v, want %v", got, tc.same)
			}
		})
	}
	if len(base.ID) != usage.IDLength || strings.ToLower(base.ID) != base.ID {
		t.Errorf("id %q is not %d lower-case hex digits", base.ID, usage.IDLength)
	}
}

// TestDeriveIDOfVersion1IsUnchanged: records sampled before schema version 2
// (stored, or still in an agent's spool) keep their ids, which left the node
// and the run out, and still validate.
func TestDeriveIDOfVersion1IsUnchanged(t *testing.T) {
	v1 := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	v1.SchemaVersion = 1
	v1.SetID()
	if want := v1ID; v1.ID != want {
		t.Fatalf("version 1 id = %s, want %s as it always was", v1.ID, want)
	}
	other := v1
	other.Node, other.RunID = "node-2", "abc-run2"
	if usage.DeriveID(&other) != v1.ID {
		t.Error("version 1 ids now depend on the node or the run")
	}
	if ps := usage.Validate(&v1, 0, now, usage.DefaultLimits()); len(ps) > 0 {
		t.Errorf("a version 1 record is refused: %v", ps)
	}
	v2 := v1
	v2.SchemaVersion = usage.SchemaVersion
	if ps := usage.Validate(&v2, 0, now, usage.DefaultLimits()); len(ps) != 1 || ps[0].Field != "id" {
		t.Errorf("a version 2 record with a version 1 id: problems %v, want one of id", ps)
	}
}

// v1ID is the version 1 id of TestDeriveIDOfVersion1IsUnchanged's record.
const v1ID = "90f34ee923c8f720bf014775af1e0c3f"

// TestIDAndContentHashEncodingsAreFixed: version 2 ids and content hashes are
// stored beside every record, so their encodings never change (a faster way
// to compute them must give the same bytes), for a container's meter and a
// volume's.
func TestIDAndContentHashEncodingsAreFixed(t *testing.T) {
	container := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	volume := usagetest.Record("caami", "abc", usage.MeterStorageByteSeconds, start, -7)
	volume.Volume, volume.ContainerID = "data", ""
	volume.SetID()
	for _, tc := range []struct {
		r           usage.Record
		id, content string
	}{
		{container, "05991bb06d785519fc3106c0afb6b6b6", "e125d173d6d00cbf908c5acd871c501c"},
		{volume, "ca9a855314dc3e1f7bae2ecb9073e212", "945ea3bf9cc5635b0eed0b5fc5bcca21"},
	} {
		if tc.r.ID != tc.id {
			t.Errorf("%s id = %s, want %s as it always was", tc.r.Meter, tc.r.ID, tc.id)
		}
		if got := hex.EncodeToString(usage.ContentHash(&tc.r)); got != tc.content {
			t.Errorf("%s content hash = %s, want %s as it always was", tc.r.Meter, got, tc.content)
		}
	}
}

// TestValidateRefusesWindowsBeforeTheEarliest: with a rate card, a record
// from before its first version could never be priced.
func TestValidateRefusesWindowsBeforeTheEarliest(t *testing.T) {
	lim := usage.DefaultLimits()
	lim.Earliest = now.AddDate(0, -1, 0)
	for _, tc := range []struct {
		start time.Time
		ok    bool
	}{{lim.Earliest, true}, {lim.Earliest.Add(-time.Second), false}, {now.AddDate(0, 0, -391), false}} {
		r := usagetest.Record("caami", "abc", usage.MeterCPU, tc.start, 100)
		ps := usage.Validate(&r, 0, now, lim)
		if tc.ok != (len(ps) == 0) || (len(ps) > 0 && ps[0].Field != "window_start") {
			t.Errorf("window from %s with the first version at %s: %v; want ok %v, or a problem at window_start", tc.start, lim.Earliest, ps, tc.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	lim := usage.DefaultLimits()
	tests := map[string]struct {
		change func(r *usage.Record)
		field  string // "" means valid
	}{
		"a well-formed record is valid":                   {func(r *usage.Record) {}, ""},
		"a window ending 5 minutes ahead is valid":        {func(r *usage.Record) { r.WindowStart, r.WindowEnd = now, now.Add(5*time.Minute) }, ""},
		"a window ending past the future skew is invalid": {func(r *usage.Record) { r.WindowStart, r.WindowEnd = now, now.Add(5*time.Minute+time.Second) }, "window_end"},
		"a window starting before the horizon is invalid": {func(r *usage.Record) {
			r.WindowStart = now.Add(-401 * 24 * time.Hour)
			r.WindowEnd = r.WindowStart.Add(time.Minute)
		}, "window_start"},
		"a window ending before it starts is invalid":       {func(r *usage.Record) { r.WindowEnd = r.WindowStart.Add(-time.Second) }, "window_end"},
		"an empty window is invalid":                        {func(r *usage.Record) { r.WindowEnd = r.WindowStart }, "window_end"},
		"a window longer than the maximum is invalid":       {func(r *usage.Record) { r.WindowEnd = r.WindowStart.Add(61 * time.Minute) }, "window_end"},
		"a negative quantity is invalid":                    {func(r *usage.Record) { r.Quantity = -1 }, "quantity"},
		"more container seconds than the window is invalid": {func(r *usage.Record) { r.Meter, r.Quantity = usage.MeterContainerSeconds, 61 }, "quantity"},
		"an unknown meter is invalid":                       {func(r *usage.Record) { r.Meter = "gpu_seconds" }, "meter"},
		"an unknown environment is invalid":                 {func(r *usage.Record) { r.Environment = "staging" }, "environment"},
		"an upper-case tenant is invalid":                   {func(r *usage.Record) { r.Tenant = "CAAMI" }, "tenant"},
		"a missing project is invalid":                      {func(r *usage.Record) { r.Project = "" }, "project"},
		"a missing node is invalid":                         {func(r *usage.Record) { r.Node = "" }, "node"},
		"a container meter without a container is invalid":  {func(r *usage.Record) { r.ContainerID = "" }, "container_id"},
		"a container meter without a run is invalid":        {func(r *usage.Record) { r.RunID = "" }, "run_id"},
		"a container meter naming a volume is invalid":      {func(r *usage.Record) { r.Volume = "pgdata" }, "volume"},
		"a storage meter without a volume is invalid":       {func(r *usage.Record) { r.Meter = usage.MeterStorageByteSeconds; r.RunID = ""; r.ContainerID = "" }, "volume"},
		"a storage meter naming a container is invalid":     {func(r *usage.Record) { r.Meter, r.Volume, r.RunID = usage.MeterStorageByteSeconds, "pgdata", "" }, "container_id"},
		"an unsupported schema version is invalid":          {func(r *usage.Record) { r.SchemaVersion = usage.SchemaVersion + 1 }, "schema_version"},
		"a received_at set by the sender is invalid":        {func(r *usage.Record) { r.ReceivedAt = now }, "received_at"},
		"a missing id is invalid":                           {func(r *usage.Record) { r.ID = "" }, "id"},
		"an id that does not match the content is invalid":  {func(r *usage.Record) { r.ID = strings.Repeat("0", 32) }, "id"},
		"an id changed by a content change is caught":       {func(r *usage.Record) { r.ContainerID = "other" }, "id"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
			tc.change(&r)
			if tc.field != "id" {
				r.SetID() // isolate the field under test from the id check
			}
			ps := usage.Validate(&r, 7, now, lim)
			if tc.field == "" {
				if len(ps) != 0 {
					t.Fatalf("valid record rejected: %v", ps)
				}
				return
			}
			if len(ps) == 0 {
				t.Fatalf("invalid record accepted (want a problem with %s)", tc.field)
			}
			if ps[0].Field != tc.field || ps[0].Index != 7 || ps[0].Reason == "" {
				t.Errorf("problems = %v, want the first at records[7].%s", ps, tc.field)
			}
		})
	}
}

func batchJSON(recs ...usage.Record) string { return batchtest.Body(usage.EncodeBatch, recs...) }

func TestDecodeBatch(t *testing.T) {
	good := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	bad := good
	bad.Quantity = -3
	bad.SetID()
	lim := usage.DefaultLimits()
	lim.MaxRecords = 3

	t.Run("a valid batch decodes to its records", func(t *testing.T) {
		recs, err := usage.DecodeBatch(strings.NewReader(batchJSON(good)), now, lim)
		if err != nil || len(recs) != 1 || recs[0] != good {
			t.Fatalf("DecodeBatch = %+v, %v; want the record back", recs, err)
		}
	})
	problems := map[string]struct {
		body  string
		index int
		field string
	}{
		"a bad record is named by its index and field": {batchJSON(good, good, bad), 2, "quantity"},
		"an unknown field is named":                    {strings.Replace(batchJSON(good), `"node"`, `"gpu":1,"node"`, 1), 0, "gpu"},
		"a quantity that is not an integer is named":   {strings.Replace(batchJSON(good), `"quantity":100`, `"quantity":1.5`, 1), 0, "quantity"},
		"a quantity beyond int64 is named":             {strings.Replace(batchJSON(good), `"quantity":100`, `"quantity":99999999999999999999`, 1), 0, "quantity"},
		"a malformed time is named":                    {strings.Replace(batchJSON(good), `"window_end":"`, `"window_end":"yesterday`, 1), 0, "window_end"},
		"a time that is not a string is named":         {strings.Replace(batchJSON(good), `"window_start":"`+good.WindowStart.Format(time.RFC3339Nano)+`"`, `"window_start":5`, 1), 0, "window_start"},
	}
	for name, tc := range problems {
		t.Run(name, func(t *testing.T) {
			_, err := usage.DecodeBatch(strings.NewReader(tc.body), now, lim)
			var inv *batch.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v, want an InvalidError", err)
			}
			if p := inv.Problems[0]; p.Index != tc.index || p.Field != tc.field {
				t.Errorf("problems = %v, want records[%d].%s first", inv.Problems, tc.index, tc.field)
			}
		})
	}
	malformed := map[string]string{
		"an empty body is malformed":            ``,
		"a bare array is malformed":             `[` + strings.TrimSuffix(strings.TrimPrefix(batchJSON(good), `{"records":[`), "]}\n") + `]`,
		"a missing records field is malformed":  `{}`,
		"an unknown envelope field is rejected": `{"records":[],"node":"x"}`,
		"truncated JSON is malformed":           batchJSON(good)[:40],
		"trailing data is malformed":            batchJSON(good) + `{}`,
		"a repeated records field is malformed": `{"records":[],"records":[]}`,
	}
	for name, body := range malformed {
		t.Run(name, func(t *testing.T) {
			if _, err := usage.DecodeBatch(strings.NewReader(body), now, lim); !errors.Is(err, batch.ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
	t.Run("a batch over the record limit is refused", func(t *testing.T) {
		_, err := usage.DecodeBatch(strings.NewReader(batchJSON(good, good, good, good)), now, lim)
		var tm *batch.TooManyError
		if !errors.As(err, &tm) || tm.Limit != 3 {
			t.Errorf("err = %v, want TooManyRecordsError{3}", err)
		}
	})
}

func TestTotal(t *testing.T) {
	// Sum 3 quantities near the int64 maximum both ways: split halves and big.Int.
	qs := []uint64{1<<63 - 1, 1<<63 - 7, 4 << 30 * 3600}
	var hi, lo uint64
	want := new(big.Int)
	var direct usage.Total
	for _, q := range qs {
		hi += q >> 32
		lo += q & 0xFFFFFFFF
		want.Add(want, new(big.Int).SetUint64(q))
		direct.Add(q)
	}
	got := usage.FromSplitSums(hi, lo)
	if got.Big().Cmp(want) != 0 || direct.Big().Cmp(want) != 0 {
		t.Fatalf("split sum %s, direct sum %s, want %s", got, direct, want)
	}
	if got.String() != want.String() {
		t.Errorf("String() = %s, want %s", got, want)
	}
	b, err := got.MarshalJSON()
	if err != nil || string(b) != `"`+want.String()+`"` {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	var back usage.Total
	if err := back.UnmarshalJSON(b); err != nil || back != got {
		t.Fatalf("UnmarshalJSON = %s, %v; want %s", back, err, got)
	}
	for _, s := range []string{"-1", "abc", "340282366920938463463374607431768211456"} {
		if _, err := usage.ParseTotal(s); err == nil {
			t.Errorf("ParseTotal(%q) succeeded", s)
		}
	}
}
