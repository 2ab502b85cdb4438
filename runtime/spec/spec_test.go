package spec_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/spec"
)

func TestTheExamplePlatformParsesWithItsDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/platform.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Parse(data, "platform.yaml")
	if err != nil {
		t.Fatal(err)
	}
	caami := s.Institutions[0]
	pricing := caami.Projects[0].Apps[0]
	if caami.Quota.CPU != 4000 || caami.Quota.Memory != 4<<30 || pricing.Replicas != 2 || pricing.Resources.CPU != 500 ||
		pricing.Resources.Memory != 256<<20 || pricing.Health.Interval != 5*time.Second || pricing.Health.Timeout != 2*time.Second ||
		pricing.Ports[0].Protocol != "tcp" {
		t.Errorf("caami parsed as %+v, pricing as %+v", caami.Quota, pricing)
	}
	db := caami.Projects[0].Apps[2]
	if db.Replicas != 1 || db.Restart.Policy != "on-failure" || db.Volumes[0].Size != 10<<30 {
		t.Errorf("records-db parsed as %+v", db)
	}
}

func TestSpecProblemsNameTheirLineAndField(t *testing.T) {
	base, err := os.ReadFile("testdata/platform.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		old, new string
		line     int
		field    string
		msg      string
	}{
		"a spec over its CPU quota is refused, naming the quota and by how much": {
			"replicas: 2", "replicas: 7", 5, "institutions[0].quota.cpu", "over the CPU quota: caami asks for 4.75 CPU, 0.75 CPU more than its quota of 4 CPU"},
		"a spec over its container quota is refused": {
			"containers: 4}", "containers: 0}", 35, "institutions[1].quota", "every institution has a quota"},
		"a spec over its volume quota is refused": {
			"size: 10Gi", "size: 60Gi", 5, "institutions[0].quota.volume_size", "10Gi more than its quota of 50Gi"},
		"a missing memory limit is named at its app": {
			"{cpu: 250m, memory: 128Mi, pids: 64}", "{cpu: 250m, pids: 64}", 26, "institutions[0].projects[0].apps[1].resources.memory", "every container runs with a memory limit"},
		"an unknown environment is named at its line": {
			"env: test", "env: staging", 40, "institutions[1].projects[0].apps[0].env", `"staging" must be dev, test, acc or prod`},
		"two probe kinds at once are refused": {
			"health: {tcp: {port: 5432}}", "health: {tcp: {port: 5432}, exec: [true]}", 32, "institutions[0].projects[0].apps[2].health", "exactly one of"},
		"a capability that would break the isolation is refused": {
			"read_only_root: true", "read_only_root: true\n            capabilities: [SYS_ADMIN]", 22, "institutions[0].projects[0].apps[0].capabilities[0]", "not a capability"},
		"a restart policy that does not exist is named": {
			"policy: on-failure, max_attempts: 3", "policy: sometimes", 44, "institutions[1].projects[0].apps[0].restart.policy", `"sometimes"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("the example lacks %q", tc.old)
			}
			_, err := spec.Parse([]byte(strings.Replace(string(base), tc.old, tc.new, 1)), "platform.yaml")
			var se *spec.Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse = %v, want a *spec.Error", err)
			}
			for _, p := range se.Problems {
				if p.Field == tc.field && p.Line == tc.line && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("problems %+v lack %s at line %d saying %q", se.Problems, tc.field, tc.line, tc.msg)
		})
	}
}

func TestUnknownKeysAndBadQuantitiesAreRefusedWithTheirLine(t *testing.T) {
	for name, yaml := range map[string]string{
		"an unknown key":     "institutions:\n  - id: caami\n    colour: red\n",
		"a malformed size":   "institutions:\n  - id: caami\n    quota: {memory: lots}\n",
		"a malformed CPU":    "institutions:\n  - id: caami\n    quota: {cpu: 2cores}\n",
		"a negative replica": "institutions:\n  - id: caami\n    projects: [{id: p, apps: [{id: a, replicas: x}]}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := spec.Parse([]byte(yaml), "bad.yaml")
			if err == nil || !strings.Contains(err.Error(), "line 3") {
				t.Errorf("Parse = %v, want an error at line 3", err)
			}
		})
	}
}

func TestQuantities(t *testing.T) {
	for text, want := range map[string]uint64{"512Mi": 512 << 20, "1Gi": 1 << 30, "1.5Gi": 3 << 29, "1000": 1000, "2k": 2000} {
		var b spec.Bytes
		if err := b.UnmarshalText([]byte(text)); err != nil || uint64(b) != want {
			t.Errorf("Bytes(%q) = %d, %v; want %d", text, b, err, want)
		}
	}
	for text, want := range map[string]uint64{"500m": 500, "1.5": 1500, "2": 2000} {
		var m spec.Millicores
		if err := m.UnmarshalText([]byte(text)); err != nil || uint64(m) != want {
			t.Errorf("Millicores(%q) = %d, %v; want %d", text, m, err, want)
		}
	}
	for _, bad := range []string{"", "-1Gi", "1Xi", "Gi"} {
		var b spec.Bytes
		if err := b.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("Bytes(%q) accepted", bad)
		}
	}
}

// FuzzParse: whatever the file holds, Parse does not panic, and a spec it
// accepts has the limits every container must run with.
func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("testdata/platform.yaml")
	f.Add(string(data))
	f.Add("institutions: [{id: a, quota: {cpu: 1, memory: 1Gi, containers: 1}, projects: [{id: p, apps: [{id: x, env: dev, image: i, resources: {cpu: 1, memory: 8Mi, pids: 1}}]}]}]")
	f.Add("institutions: {}")
	f.Add(": :")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := spec.Parse([]byte(text), "fuzz.yaml")
		if err != nil {
			return
		}
		for _, inst := range s.Institutions {
			for _, p := range inst.Projects {
				for _, a := range p.Apps {
					if a.Resources.CPU == 0 || a.Resources.Memory == 0 || a.Resources.Pids <= 0 || a.Replicas < 1 {
						t.Fatalf("accepted an app without limits: %+v", a)
					}
				}
			}
		}
	})
}
