package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/image"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
)

// TestTheExamplePlatformFitsTheExampleConfig checks the platform `make run`
// brings up: it parses (quotas included), its institutions are the example
// configuration's tenants, and it shows every kind of health check.
func TestTheExamplePlatformFitsTheExampleConfig(t *testing.T) {
	plat, err := spec.Load("../../examples/platform.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("../../deploy/examples/paasmeter.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, inst := range plat.Institutions {
		if !cfg.Tenants.Has(inst.ID) {
			t.Errorf("institution %q is not a tenant of the example config", inst.ID)
		}
		for _, p := range inst.Projects {
			for _, a := range p.Apps {
				if a.Image != image.DemoTag {
					t.Errorf("%s/%s runs %s, not the demo image", inst.ID, a.ID, a.Image)
				}
				switch h := a.Health; {
				case h == nil:
				case h.HTTP != nil:
					kinds["http"] = true
				case h.TCP != nil:
					kinds["tcp"] = true
				default:
					kinds["exec"] = true
				}
			}
		}
	}
	if len(kinds) != 3 {
		t.Errorf("health checks of the example: %v, want http, tcp and exec", kinds)
	}
	if institutionToken(cfg, "caami") != "pm_example_caami" {
		t.Errorf("the example caami token is not recognised: %s", institutionToken(cfg, "caami"))
	}
	// What `make run` prints says where the portal is and how to sign in.
	var out bytes.Buffer
	(&app{stdout: &out}).printWhereToLook(cfg, plat, "127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:9100", "unix:///run/docker.sock")
	if want := "portal             http://127.0.0.1:8080/portal/  (sign in with caami's token pm_example_caami)"; !strings.Contains(out.String(), want) {
		t.Errorf("up prints no %q:\n%s", want, out.String())
	}
}

// upEnv is a configuration and platform for `paasmeter up` of its own: a
// unique node and institution, so tests sharing the engine do not meet.
type upEnv struct {
	dir, node, tenant, api, config, platform string
	readToken, agentAdmin                    string
}

func newUpEnv(t *testing.T, cli *client.Client, platform string) *upEnv {
	t.Helper()
	n := time.Now().UnixNano() % 1e9
	e := &upEnv{dir: t.TempDir(), node: fmt.Sprintf("up-%d", n), tenant: fmt.Sprintf("inst-%d", n), api: testenv.FreeAddr(t), readToken: "up-reader", agentAdmin: testenv.FreeAddr(t)}
	agentToken := "up-agent"
	tokenFile := filepath.Join(e.dir, "agent-token")
	if err := os.WriteFile(tokenFile, []byte(agentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`store: {data_dir: %s}
collector: {listen: "%s", admin_listen: "%s"}
agent:
  node: %s
  token_file: %s
  docker_host: %s
  spool_dir: %s
  sample_interval: 1s
  window: 10s
  admin_listen: "%s"
  supervise_interval: 500ms
  stop_timeout: 1s
tenants: [{id: %s, name: Test}]
tokens:
  - {name: agent, role: agent, node: %s, tenants: [%s], sha256: %s}
  - {name: reader, role: institution, tenant: %s, sha256: %s}
`, filepath.Join(e.dir, "data"), e.api, testenv.FreeAddr(t), e.node, tokenFile, os.Getenv(dockertest.HostEnv), filepath.Join(e.dir, "spool"),
		e.agentAdmin, e.tenant, e.node, e.tenant, auth.Hash(agentToken), e.tenant, auth.Hash(e.readToken))
	e.config = filepath.Join(e.dir, "paasmeter.yaml")
	e.platform = filepath.Join(e.dir, "platform.yaml")
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.platform, []byte(strings.ReplaceAll(platform, "TENANT", e.tenant)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, c := range e.containers(t, cli, true) {
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			dockertest.RemoveCgroupParent("/paasmeter/" + c.Labels[engine.LabelRun])
		}
		cli.NetworkRemove(ctx, supervise.Network(e.tenant))
	})
	return e
}

// containers lists the node's containers: all of them, or the running ones.
func (e *upEnv) containers(t *testing.T, cli *client.Client, all bool) []container.Summary {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: all,
		Filters: filters.NewArgs(filters.Arg("label", supervise.LabelNode+"="+e.node))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// agentMetrics returns the agent's probe counters, as its /metrics shows them.
func (e *upEnv) agentMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + e.agentAdmin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "paasmeter_runtime_probes_total") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// up runs `paasmeter up` in-process until ctx ends; its output goes to the test log.
func (e *upEnv) up(t *testing.T, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		root := newRoot(&testLog{t: t, prefix: "up: "}, &testLog{t: t, prefix: "up: "}, func(string) string { return "" }, clock.System{})
		root.SetArgs([]string{"up", "--config", e.config, "--platform", e.platform})
		done <- root.ExecuteContext(ctx)
	}()
	return done
}

// usageRow is a row of the usage API's answer.
type usageRow struct {
	Meter    string `json:"meter"`
	Quantity string `json:"quantity"`
}

// upSiteSpec starts the platforms of these tests: one tenant with room for
// two containers and its app web/site in prod; each test adds the rest of the app.
const upSiteSpec = `institutions:
  - id: TENANT
    quota: {cpu: 1, memory: 256Mi, containers: 2}
    projects:
      - id: web
        apps:
          - id: site
            env: prod
            image: paasmeter-demo:1
`

// TestUpRunsMetersAndStopsThePlatform brings a one-app platform up on the
// real engine: the app's usage is served by the usage API and its probes are
// stored; cancelling stops its container, ships its end, and returns nil.
func TestUpRunsMetersAndStopsThePlatform(t *testing.T) {
	cli := dockertest.Client(t)
	e := newUpEnv(t, cli, upSiteSpec+`            command: [httpd, -f, -p, "8080", -h, /www]
            resources: {cpu: 200m, memory: 32Mi, pids: 16}
            health:
              http: {path: /healthz, port: 8080}
              interval: 1s
              timeout: 900ms
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done := e.up(t, ctx)

	// Usage of the app's container, through the API an institution reads.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var body struct {
			Rows []usageRow `json:"rows"`
		}
		req, _ := http.NewRequest("GET", "http://"+e.api+"/api/v1/tenants/"+e.tenant+"/usage?app=site", nil)
		req.Header.Set("Authorization", "Bearer "+e.readToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			if resp.StatusCode == 200 {
				json.NewDecoder(resp.Body).Decode(&body)
			}
			resp.Body.Close()
		}
		if slices.ContainsFunc(body.Rows, func(r usageRow) bool { return r.Meter == "container_seconds" && r.Quantity != "0" }) {
			t.Logf("usage served %s after up started", time.Since(start).Round(time.Millisecond))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("up returned before any usage was served: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usage of the app served: %+v", body.Rows)
		}
	}
	if n := len(e.containers(t, cli, false)); n != 1 {
		t.Fatalf("%d running containers of the node, want 1", n)
	}
	// A passed probe, as the agent counts it, before the platform stops: on a
	// loaded machine the first probes may miss their timeout.
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(e.agentMetrics(t), `result="ok"`) {
		if time.Now().After(deadline) {
			t.Fatal("the app never passed a probe")
		}
		time.Sleep(200 * time.Millisecond)
	}

	stopCommand(t, cancel, done, "up", 30*time.Second)
	// Stopped, metered, then removed: the next `up` starts afresh.
	if left := e.containers(t, cli, true); len(left) > 0 {
		t.Errorf("%d containers are left after up stopped (%s)", len(left), left[0].State)
	}

	st, err := embedded.Open(context.Background(), filepath.Join(e.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var probesOK int
	var stopped bool
	err = st.ScanEvents(context.Background(), metering.EventFilter{Tenant: e.tenant, From: start.Add(-time.Minute), To: time.Now().Add(time.Minute)},
		func(ev events.Event) error {
			switch {
			case ev.Type == events.Probe && ev.Probe.OK:
				probesOK++
			case ev.Type == events.Died && ev.Initiator == events.ByPlatform:
				stopped = true
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if probesOK == 0 || !stopped {
		t.Errorf("stored events: %d passed probes, a died event initiated by the platform: %v; want both", probesOK, stopped)
	}
}

// TestUpRefusesAPlatformOverQuota checks that `up` names the quota a spec
// exceeds and starts nothing: no container, no collector.
func TestUpRefusesAPlatformOverQuota(t *testing.T) {
	cli := dockertest.Client(t)
	e := newUpEnv(t, cli, upSiteSpec+`            replicas: 3
            resources: {cpu: 100m, memory: 16Mi, pids: 16}
`)
	err := <-e.up(t, context.Background())
	if err == nil || !strings.Contains(err.Error(), "over the containers quota") {
		t.Fatalf("up of a spec over quota: %v", err)
	}
	if n := len(e.containers(t, cli, true)); n > 0 {
		t.Errorf("%d containers were created", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the collector's store was opened: %v", err)
	}
	if _, err := cli.NetworkInspect(context.Background(), supervise.Network(e.tenant), network.InspectOptions{}); err == nil {
		t.Errorf("the institution's network was created")
	}
}
