package tail_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/nodetest"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

// startNode runs a collector and an agent that ships logs with cfg.
func startNode(t *testing.T, cfg tail.Config) *nodetest.Node {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{Sample: 10 * time.Second, Window: time.Minute, Logs: &cfg})
}

// startContainer starts a labelled container running the shell script cmd,
// on the node's runtime (so the agents of other tests leave it alone), and
// returns its id and name. opts change its configuration.
func startContainer(t *testing.T, n *nodetest.Node, app, cmd string, opts ...func(*container.Config, *container.HostConfig)) (string, string) {
	t.Helper()
	ctx := context.Background()
	name := dockertest.Name(t, app)
	cfg := &container.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sh", "-c", cmd}, Labels: map[string]string{
		engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: app, engine.LabelEnv: "prod", engine.LabelNode: n.Name}}
	hc := &container.HostConfig{}
	for _, o := range opts {
		o(cfg, hc)
	}
	c, err := n.Cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := n.Cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID, name
}

func waitExit(t *testing.T, n *nodetest.Node, id string) {
	t.Helper()
	waitC, errC := n.Cli.ContainerWait(context.Background(), id, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
}

// stored returns the lines of a container in the collector's store, oldest first.
func stored(t *testing.T, st metering.Store, name string) []logs.Line {
	t.Helper()
	m, err := logs.NewMatcher(logs.LabelContainer, logs.MatchEqual, name)
	if err != nil {
		t.Fatal(err)
	}
	q := metering.LogQuery{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
		Selector: logs.Selector{Matchers: []*logs.Matcher{m}}, Limit: metering.MaxLogLimit, Forward: true}
	var all []logs.Line
	for {
		page, err := metering.QueryLogs(context.Background(), st, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Lines...)
		if page.Next == "" {
			return all
		}
		q.Cursor = page.Next
	}
}

// stallTimeout ends waitStored and waitCount once the count they watch
// stopped moving that long: they wait for lines to arrive, not for them to
// arrive fast. A fixed deadline failed tests whose lines were all still
// coming, at 4,912 of 5,000 after two minutes on a machine at load 33;
// a stall of a minute is a follower that stopped.
const stallTimeout = time.Minute

// progress tracks a count a test waits on and tells when it stalled.
type progress struct {
	last  float64
	moved time.Time
}

func newProgress() *progress { return &progress{last: -1, moved: time.Now()} }

// stalled records got and reports whether it has not changed for stallTimeout.
func (p *progress) stalled(got float64) bool {
	if got != p.last {
		p.last, p.moved = got, time.Now()
	}
	return time.Since(p.moved) > stallTimeout
}

// waitStored waits until want lines of the container are stored and returns them.
func waitStored(t *testing.T, n *nodetest.Node, name string, want int) []logs.Line {
	t.Helper()
	p := newProgress()
	for {
		got := stored(t, n.Store, name)
		if len(got) == want {
			return got
		}
		if len(got) > want || p.stalled(float64(len(got))) {
			t.Fatalf("%d lines of %s stored, want %d", len(got), name, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// byStream splits lines by stream, in their order.
func byStream(lines []logs.Line) map[string][]string {
	m := map[string][]string{}
	for _, l := range lines {
		m[l.Labels[logs.LabelStream]] = append(m[l.Labels[logs.LabelStream]], l.Line)
	}
	return m
}

// checkNumbered checks that texts are the numbers 0 to n-1, each once, in order.
func checkNumbered(t *testing.T, stream string, texts []string, n int) {
	t.Helper()
	for i, s := range texts {
		if v, err := strconv.Atoi(s); err != nil || v != i {
			t.Fatalf("%s: line %d is %q, want %d (lost, duplicated or out of order)", stream, i, s, i)
		}
	}
	if len(texts) != n {
		t.Fatalf("%s: %d lines, want %d", stream, len(texts), n)
	}
}

// numbered is a shell loop printing 0 to n-1 on stdout and on stderr,
// pausing pause seconds every every lines.
func numbered(n, every int, pause string) string {
	return fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo $i; echo $i >&2; i=$((i+1)); [ $((i %% %d)) -eq 0 ] && sleep %s; done; true", n, every, pause)
}

// waitCount waits until the container's counter of outcome reaches want.
func waitCount(t *testing.T, n *nodetest.Node, name, outcome string, want float64) {
	t.Helper()
	p := newProgress()
	for {
		got := promtest.Value(t, n.Reg, "paasmeter_agent_log_lines_total", map[string]string{"container": name, "outcome": outcome})
		if got == want {
			return
		}
		if got > want || p.stalled(got) {
			t.Fatalf("%s lines of %s: %v, want %v", outcome, name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStdoutAndStderrArriveWithTheirLabelsAndTheEnginesTimestamps(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	id, name := startContainer(t, n, "labels", `echo out-1; echo err-1 >&2; echo out-2; head -c 40000 /dev/zero | tr '\0' x; echo; echo err-2 >&2`)
	waitExit(t, n, id)
	lines := waitStored(t, n, name, 5)

	// The engine's own account, with its timestamps.
	rc, err := n.Cli.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		t.Fatal(err)
	}
	engineTimes := map[string][]string{}
	for stream, b := range map[string]*bytes.Buffer{"stdout": &stdout, "stderr": &stderr} {
		for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			ts, _, _ := strings.Cut(l, " ")
			engineTimes[stream] = append(engineTimes[stream], ts)
		}
	}

	got := byStream(lines)
	long, _ := logs.Truncate(strings.Repeat("x", 40000), 16<<10)
	if want := []string{"out-1", "out-2", long}; strings.Join(got["stdout"], "|") != strings.Join(want, "|") {
		t.Errorf("stdout: %.80q, want out-1, out-2 and the 40,000-byte line truncated with its marker", got["stdout"])
	}
	if want := []string{"err-1", "err-2"}; strings.Join(got["stderr"], "|") != strings.Join(want, "|") {
		t.Errorf("stderr: %q, want %q", got["stderr"], want)
	}
	seen := map[string]int{}
	for _, l := range lines {
		stream := l.Labels[logs.LabelStream]
		want := map[string]string{"project": "claims", "app": "labels", "env": "prod", "node": n.Name, "container": name, "stream": stream}
		if logs.StreamKey(l.Labels) != logs.StreamKey(want) {
			t.Errorf("labels %s, want %s", logs.StreamKey(l.Labels), logs.StreamKey(want))
		}
		engineTime, _ := time.Parse(time.RFC3339Nano, engineTimes[stream][seen[stream]])
		if !l.Time.Equal(engineTime) {
			t.Errorf("%s line %d at %s; the engine says %s", stream, seen[stream], l.Time.Format(time.RFC3339Nano), engineTime.Format(time.RFC3339Nano))
		}
		seen[stream]++
	}
	waitCount(t, n, name, "shipped", 5)
	for outcome, want := range map[string]float64{"read": 5, "truncated": 1, "rate_limited": 0, "rejected": 0} {
		if got := promtest.Value(t, n.Reg, "paasmeter_agent_log_lines_total", map[string]string{"container": name, "outcome": outcome}); got != want {
			t.Errorf("%s = %v, want %v", outcome, got, want)
		}
	}
}

func TestTheLinesOfAContainerWithATerminalArriveOnStdout(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	id, name := startContainer(t, n, "tty", `echo a; echo b >&2`, func(c *container.Config, _ *container.HostConfig) { c.Tty = true })
	waitExit(t, n, id)
	if got := byStream(waitStored(t, n, name, 2)); strings.Join(got["stdout"], " ") != "a b" {
		t.Errorf("got %q, want the lines a and b on stdout, without their carriage returns", got)
	}
}

func TestAnAgentRestartedTwiceWhileAContainerWritesLosesAndDuplicatesNothing(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	_, name := startContainer(t, n, "restart", numbered(1500, 100, "0.2"))
	for range 2 {
		time.Sleep(time.Second)
		n.Restart()
	}
	got := byStream(waitStored(t, n, name, 3000))
	checkNumbered(t, "stdout", got["stdout"], 1500)
	checkNumbered(t, "stderr", got["stderr"], 1500)
}

func TestAContainerStartedAgainIsReadOnWithoutTakingALineTwice(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	id, name := startContainer(t, n, "again", `for i in 1 2 3; do echo line-$i; done`)
	waitExit(t, n, id)
	waitStored(t, n, name, 3)
	if err := n.Cli.ContainerStart(context.Background(), id, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitExit(t, n, id)
	lines := waitStored(t, n, name, 6)
	if got := strings.Join(byStream(lines)["stdout"], " "); got != "line-1 line-2 line-3 line-1 line-2 line-3" {
		t.Errorf("two runs gave %q", got)
	}
	time.Sleep(300 * time.Millisecond) // nothing more comes
	if got := len(stored(t, n.Store, name)); got != 6 {
		t.Errorf("%d lines stored, want 6", got)
	}
}

func TestLinesWrittenWhileTheEngineRotatesTheLogFileAllArrive(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	// An entry of the engine's json-file is about 100 bytes: the file rotates
	// every fifty lines, 80 times, and the engine sends the follower some
	// lines again at most rotations. The engine deletes a rotated file the
	// follower has not reached yet, and its lines with it (the engine's
	// limit, not one the agent can undo): with three files kept, a follower
	// a fifth of a second behind lost lines on a loaded machine. Thirty files
	// hold 3,000 of the 4,000 lines, about three seconds of this writer.
	rotating := func(_ *container.Config, hc *container.HostConfig) {
		hc.LogConfig = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10k", "max-file": "30"}}
	}
	id, name := startContainer(t, n, "rotate", numbered(2000, 50, "0.1"), rotating)
	waitExit(t, n, id)
	got := byStream(waitStored(t, n, name, 4000))
	checkNumbered(t, "stdout", got["stdout"], 2000)
	checkNumbered(t, "stderr", got["stderr"], 2000)
}

func TestARemovedContainersLinesAreShippedThenItsCheckpointIsForgotten(t *testing.T) {
	n := startNode(t, tail.DefaultConfig())
	id, name := startContainer(t, n, "removed", numbered(200, 50, "0.1"))
	waitExit(t, n, id)
	if err := n.Cli.ContainerRemove(context.Background(), id, container.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	got := byStream(waitStored(t, n, name, 400))
	checkNumbered(t, "stdout", got["stdout"], 200)
	checkNumbered(t, "stderr", got["stderr"], 200)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(n.SpoolDir(), tail.StateFile))
		if err == nil && !bytes.Contains(b, []byte(id)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the checkpoint of the removed container is still there: %s (%v)", b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestANoisyContainerHitsItsRateLimitWhileEveryLineOfItsQuietNeighbourArrives(t *testing.T) {
	cfg := tail.DefaultConfig()
	cfg.ContainerRate = tail.Rate{LinesPerSecond: 100, Burst: 100}
	cfg.TenantRate = tail.Rate{LinesPerSecond: 2000, Burst: 2000}
	n := startNode(t, cfg)
	const noisyLines, quietLines = 5000, 50
	noisyID, noisy := startContainer(t, n, "noisy", fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo noise-$i; i=$((i+1)); done", noisyLines))
	quietID, quiet := startContainer(t, n, "quiet", fmt.Sprintf("for i in $(seq %d); do echo quiet-$i; sleep 0.01; done", quietLines))
	waitExit(t, n, noisyID)
	waitExit(t, n, quietID)

	waitCount(t, n, noisy, "read", noisyLines)
	limited := promtest.Value(t, n.Reg, "paasmeter_agent_log_lines_total", map[string]string{"container": noisy, "outcome": "rate_limited"})
	if limited == 0 {
		t.Fatalf("the noisy container was not limited")
	}
	shipped := noisyLines - int(limited)
	waitCount(t, n, noisy, "shipped", float64(shipped))
	if got := len(stored(t, n.Store, noisy)); got != shipped {
		t.Errorf("%d noisy lines stored; %d read less %v dropped is %d: the dropped count is not exact", got, noisyLines, limited, shipped)
	}
	if got := len(waitStored(t, n, quiet, quietLines)); got != quietLines {
		t.Errorf("quiet: %d lines stored, want %d", got, quietLines)
	}
	if got := promtest.Value(t, n.Reg, "paasmeter_agent_log_lines_total", map[string]string{"container": quiet, "outcome": "rate_limited"}); got != 0 {
		t.Errorf("the quiet neighbour lost %v lines to the rate limit", got)
	}
	t.Logf("noisy: %d lines written, %d shipped, %v dropped", noisyLines, shipped, limited)
}
