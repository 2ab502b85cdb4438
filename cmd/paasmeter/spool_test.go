package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/ship"
)

func TestSpoolInspectAndReplayMoveDeadLettersBack(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "paasmeter.yaml")
	os.WriteFile(cfg, []byte("agent:\n  spool_dir: "+filepath.Join(dir, "spool")+"\n"), 0o600)
	out, dead, err := node.OpenSpools(filepath.Join(dir, "spool"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out.Append(ship.KindUsage, []byte(`{"id":"pending-1"}`))
	for i := range 3 {
		b, _ := json.Marshal(ship.DeadLetter{Kind: ship.KindUsage, Status: 400, Record: json.RawMessage(fmt.Sprintf(`{"id":"dead-%d"}`, i))})
		dead.Append("dead-letter", b)
	}
	out.Close()
	dead.Close()

	got, err := run(t, context.Background(), "", "spool", "inspect", "-c", cfg)
	if err != nil || !strings.Contains(got, "outgoing: 1 entries") || !strings.Contains(got, "pending-1") {
		t.Errorf("spool inspect: %v\n%s", err, got)
	}
	got, err = run(t, context.Background(), "", "spool", "inspect", "--dead", "-c", cfg)
	if err != nil || !strings.Contains(got, "dead: 3 entries") || !strings.Contains(got, "dead-2") {
		t.Errorf("spool inspect --dead: %v\n%s", err, got)
	}
	got, err = run(t, context.Background(), "", "spool", "replay", "-c", cfg)
	if err != nil || !strings.Contains(got, "replayed 3 dead letter(s)") {
		t.Fatalf("spool replay: %v\n%s", err, got)
	}
	out, dead, err = node.OpenSpools(filepath.Join(dir, "spool"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	defer dead.Close()
	es, _ := out.Peek(10, 1<<20)
	var ids []string
	for _, e := range es {
		var r struct{ ID string }
		json.Unmarshal(e.Data, &r)
		ids = append(ids, e.Kind+":"+r.ID)
	}
	if strings.Join(ids, " ") != "usage:pending-1 usage:dead-0 usage:dead-1 usage:dead-2" || dead.Stats().Entries != 0 {
		t.Errorf("after replay: outgoing %v, %d dead letters left", ids, dead.Stats().Entries)
	}
}
