package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// TestAReadSeesAStreamThatTakesADeletedStreamsID: reads keep a tenant's
// streams between them and read only the streams stored since. SQLite gives
// a new stream the id one past the largest stored, so once retention has
// deleted the stream with the largest id, the next new stream takes that id
// again: a read must find it, with its own labels, and nothing of the
// stream that had the id before.
func TestAReadSeesAStreamThatTakesADeletedStreamsID(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	line := func(app string, at time.Time, text string) logs.Line {
		l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: "caami", Labels: map[string]string{logs.LabelApp: app}, Time: at, Line: text, ReceivedAt: at}
		l.SetID()
		return l
	}
	read := func() map[string]string { // line → its app label
		got := map[string]string{}
		q := metering.LogQuery{Tenant: "caami", From: now.AddDate(0, 0, -60), To: now.Add(time.Hour), Limit: metering.MaxLogLimit, Forward: true}
		if _, err := st.ScanLogs(ctx, q, func(l logs.Line) bool { got[l.Line] = l.Labels[logs.LabelApp]; return true }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	// The second stream, which gets the largest id, has only an old line.
	for _, l := range []logs.Line{line("kept", now, "kept"), line("expired", now.AddDate(0, 0, -40), "expired")} {
		if _, err := st.AppendLogs(ctx, []logs.Line{l}); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(); len(got) != 2 || got["expired"] != "expired" {
		t.Fatalf("before retention: %v", got)
	}
	if _, err := st.DeleteLogs(ctx, "caami", now.AddDate(0, 0, -30)); err != nil {
		t.Fatal(err)
	}
	if stored, _, err := st.CountLogStreams(ctx, "caami", nil); err != nil || stored != 1 {
		t.Fatalf("%d streams after retention (%v), want 1", stored, err)
	}
	if _, err := st.AppendLogs(ctx, []logs.Line{line("new", now, "new")}); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 2 || got["kept"] != "kept" || got["new"] != "new" {
		t.Errorf("after retention and a new stream: %v, want kept and new, each with its own app", got)
	}
}
