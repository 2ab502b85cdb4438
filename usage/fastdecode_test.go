package usage_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// agentBatch is a batch as the agent's shipper sends it: spooled records
// (json.Marshal of each) joined into the envelope.
func agentBatch(t testing.TB, recs ...usage.Record) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"records":[`)
	for i := range recs {
		if i > 0 {
			b.WriteByte(',')
		}
		data, err := json.Marshal(recs[i])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	b.WriteString("]}")
	return b.String()
}

func TestTheFastPathDecodesWhatAgentsAndEncodeBatchSend(t *testing.T) {
	recs := []usage.Record{
		usagetest.Record("caami", "abc", usage.MeterCPU, start, 100),
		usagetest.Volume("ona", "pgdata", start, 1<<40),
		usagetest.Record("caami", "abc", usage.MeterNetRx, start, 0),
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, []byte(batchJSON(recs...)), "", "\t"); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"the agent's batch": agentBatch(t, recs...),
		"EncodeBatch":       batchJSON(recs...),
		"indented":          indented.String(),
		"empty":             batchJSON(),
	} {
		got, ok := usage.DecodeFast([]byte(body), now, usage.DefaultLimits())
		if !ok {
			t.Errorf("%s: the fast path refused %s", name, body)
			continue
		}
		want, err := usage.DecodeGeneral(strings.NewReader(body), now, usage.DefaultLimits())
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: general decoder: %d records, %v", name, len(want), err)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: record %d decoded as %+v, the general decoder says %+v", name, i, got[i], want[i])
			}
		}
	}
}

// FuzzFastDecode holds the fast path to the general decoder: whatever it
// accepts, the general decoder accepts too, with the very same records.
func FuzzFastDecode(f *testing.F) {
	good := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	vol := usagetest.Volume("ona", "pgdata", start, 1<<40)
	body := agentBatch(f, good, vol)
	f.Add(body)
	f.Add(batchJSON(good, vol))
	f.Add(`{"records":[]}`)
	f.Add(" \n{ \"records\" : [ ] } \t")
	for _, edit := range [][2]string{
		{`"tenant"`, `"Tenant"`},                               // encoding/json matches keys case-insensitively
		{`"quantity":100`, `"quantity":100.0`},                 // a float for an integer
		{`"quantity":100`, `"quantity":1e2`},                   // an exponent
		{`"quantity":100`, `"quantity":0100`},                  // not JSON
		{`"quantity":100`, `"quantity":-0`},                    // minus zero
		{`"quantity":100`, `"quantity":null`},                  // null leaves the field alone
		{`"quantity":100`, `"quantity":"100"`},                 // a string for an integer
		{`"node":"node-1"`, `"node":"node-1","node":"node-2"`}, // a repeated key (refused)
		{`"node":"node-1"`, `"node":"node\u002d1"`},            // an escape
		{`"node":"node-1"`, `"node":"nødé"`},                   // not ASCII
		{`"app":"pricing"`, `"app":"pricing","x":{"y":[1,2]}`}, // an unknown field
		{`"schema_version":1`, `"schema_version":99999999999999999999`},
		{`]}`, `]}x`},
		{`]}`, `],"records":[]}`},
		{`{"records"`, "\ufeff{\"records\""},
	} {
		f.Add(strings.Replace(body, edit[0], edit[1], 1))
	}
	lim := usage.DefaultLimits()
	lim.MaxRecords = 50
	f.Fuzz(func(t *testing.T, body string) {
		fast, ok := usage.DecodeFast([]byte(body), now, lim)
		if !ok {
			return
		}
		general, err := usage.DecodeGeneral(strings.NewReader(body), now, lim)
		if err != nil {
			t.Fatalf("the fast path accepted a batch the general decoder refuses: %v", err)
		}
		if len(fast) != len(general) {
			t.Fatalf("the fast path decoded %d records, the general decoder %d", len(fast), len(general))
		}
		for i := range fast {
			if fast[i] != general[i] {
				t.Fatalf("record %d: fast %+v, general %+v", i, fast[i], general[i])
			}
		}
	})
}

// BenchmarkDecodeBatch decodes an agent's batch of 5,000 records with the
// fast path (what DecodeBatch does with a valid batch) and with the general
// decoder alone (what it did before).
func BenchmarkDecodeBatch(b *testing.B) {
	recs := make([]usage.Record, 5000)
	for i := range recs {
		recs[i] = usagetest.Record("caami", fmt.Sprintf("c%04d", i%1000), usage.MeterCPU, start.Add(-time.Duration(i/1000)*time.Minute), int64(i))
	}
	body := []byte(agentBatch(b, recs...))
	for name, decode := range map[string]func() ([]usage.Record, error){
		"fast": func() ([]usage.Record, error) {
			return usage.DecodeBatch(bytes.NewReader(body), now, usage.DefaultLimits())
		},
		"general": func() ([]usage.Record, error) {
			return usage.DecodeGeneral(bytes.NewReader(body), now, usage.DefaultLimits())
		},
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if got, err := decode(); err != nil || len(got) != len(recs) {
					b.Fatalf("%d records, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
