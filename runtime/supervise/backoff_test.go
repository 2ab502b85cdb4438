package supervise_test

import (
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
	"github.com/paasmeter/paasmeter/usage"
)

func TestBackoffDoublesFromItsStartUpToItsCeiling(t *testing.T) {
	pol := spec.Restart{Backoff: time.Second, MaxBackoff: 10 * time.Second}
	tests := map[string]struct {
		attempt int
		want    time.Duration
	}{
		"the first restart waits the backoff":         {0, time.Second},
		"the second waits twice as long":              {1, 2 * time.Second},
		"the fourth waits eight times as long":        {3, 8 * time.Second},
		"the fifth would wait 16s: it waits the max":  {4, 10 * time.Second},
		"the hundredth waits the max, not overflowed": {100, 10 * time.Second},
	}
	for name, tc := range tests {
		if got := supervise.Backoff(pol, tc.attempt); got != tc.want {
			t.Errorf("%s: got %s, want %s", name, got, tc.want)
		}
	}
}

func TestAnyChangeToAnAppsSpecChangesItsHash(t *testing.T) {
	base := spec.App{ID: "web", Env: usage.EnvProd, Image: "img:1", Command: []string{"serve"}, Replicas: 2,
		Resources: spec.Resources{CPU: 500, Memory: 64 << 20, Pids: 32}, EnvVars: map[string]string{"A": "1", "B": "2"}}
	same := base
	same.EnvVars = map[string]string{"B": "2", "A": "1"}
	if supervise.AppHash(base) != supervise.AppHash(same) {
		t.Error("the same app with its env vars in another order hashes differently")
	}
	changes := map[string]func(a *spec.App){
		"a new image":      func(a *spec.App) { a.Image = "img:2" },
		"a new env var":    func(a *spec.App) { a.EnvVars = map[string]string{"A": "1", "B": "3"} },
		"a new CPU limit":  func(a *spec.App) { a.Resources.CPU = 600 },
		"a new command":    func(a *spec.App) { a.Command = []string{"serve", "--fast"} },
		"a read-only root": func(a *spec.App) { a.ReadOnlyRoot = true },
	}
	for what, change := range changes {
		a := base
		a.EnvVars = map[string]string{"A": "1", "B": "2"}
		change(&a)
		if supervise.AppHash(a) == supervise.AppHash(base) {
			t.Errorf("%s does not change the hash", what)
		}
	}
	kept := map[string]func(a *spec.App){
		"scaling to 5 replicas": func(a *spec.App) { a.Replicas = 5 },
		"a new health check":    func(a *spec.App) { a.Health = &spec.Health{TCP: &spec.TCPProbe{Port: 80}} },
		"a new restart policy":  func(a *spec.App) { a.Restart.Policy = "always" },
	}
	for what, change := range kept {
		a := base
		change(&a)
		if supervise.AppHash(a) != supervise.AppHash(base) {
			t.Errorf("%s changes the hash: it would restart every replica", what)
		}
	}
}
