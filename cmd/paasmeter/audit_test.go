package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/accesslog"
)

func TestAuditVerifyChecksTheChainAndNamesTheFirstBrokenLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.jsonl")
	f, err := accesslog.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"caami", "ona", "caami"} {
		if err := f.Record(context.Background(), accesslog.Entry{Actor: "ops", Action: "GET /x", Tenant: tenant, Outcome: accesslog.Allowed, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head := accesslog.Hash(bytes.TrimSuffix(b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:], []byte("\n")))

	out, err := run(t, context.Background(), "", "audit", "verify", "--file", path)
	if err != nil || !strings.Contains(out, "3 entries, chain intact") || !strings.Contains(out, "head: "+head) {
		t.Errorf("verify of an intact file: %v\n%s", err, out)
	}
	// Without --file, the file the configuration names.
	cfg := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  data_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, context.Background(), "", "audit", "verify", "-c", cfg); err != nil || !strings.Contains(out, path+": 3 entries") {
		t.Errorf("verify of the configured file: %v\n%s", err, out)
	}

	// ona's read, rewritten as another tenant's, breaks the chain at the next line.
	i := bytes.Index(b, []byte(`"tenant":"ona"`))
	tampered := append(append(append([]byte{}, b[:i]...), `"tenant":"cam"`...), b[i+len(`"tenant":"ona"`):]...)
	if err := os.WriteFile(path, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, context.Background(), "", "audit", "verify", "--file", path); err == nil || !strings.Contains(err.Error(), "breaks at line 3") {
		t.Errorf("verify of a tampered file: %v, want the chain broken at line 3", err)
	}
}
