package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/kube"
)

// kubeNodeSpec is what the kube-node bench runs.
type kubeNodeSpec struct {
	// Pods are the pod counts measured, in increasing order.
	Pods        []int
	Duration    time.Duration // of each agent's measure
	Interval    time.Duration // the agents' sampling interval
	Program     string        // the paasmeter binary
	Kubeconfig  string
	Node        string
	Image       string // the pods' image, on the node already
	PodLogDir   string
	CgroupRoot  string
	DockerHost  string // "": no Docker agent beside
	DockerImage string
	CycleRounds int // sampling rounds timed per N
	// NoLogs turns the agents' log tailers off, to tell their share.
	NoLogs bool
}

// The bench's own institution label: the agent meters the bench's pods only,
// not those other tests run on the same cluster under paasmeter.io/ labels.
const (
	kubeBenchInstitutionLabel = "paasmeter-bench.io/institution"
	kubeBenchProjectLabel     = "paasmeter-bench.io/project"
	kubeBenchEnvironmentLabel = "paasmeter-bench.io/environment"
)

// benchKubeNodeCmd measures what one Kubernetes node can carry: the agent's
// cost with N pods, beside the Docker agent's with N containers.
func (a *app) benchKubeNodeCmd() *cobra.Command {
	var s kubeNodeSpec
	cmd := &cobra.Command{
		Use:   "kube-node",
		Short: "Agent CPU, memory and records a minute on one Kubernetes node with N pods, beside the Docker agent's with N containers",
		Long: `For each --pods count N, in increasing order: run N idle busybox pods (sleep,
1m CPU and 4 MiB requested) in a namespace of the bench's own on the node
--node of the cluster at --kubeconfig (by default the test cluster that
scripts/test-deps.sh brings up), run 'paasmeter agent' with agent.kind
kubernetes as a separate process (the binary at --paasmeter, by default the
paasmeter beside this program) shipping to a collector on loopback, and once it
tracks the N pods measure for --duration: its CPU (user+system, from
/proc/<pid>/stat), its resident memory and peak (VmHWM), and the records of the
usage windows that ended meanwhile, as the collector stored them. Then time one
sampling round of the N pods' cgroups, the agent's way. With --docker-host, do
the same with N idle containers on that Docker Engine and the Docker agent, in
the same run. The load average is printed with every row: the machine may be
shared.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.benchKubeNode(cmd.Context(), &s) },
	}
	varLog := os.Getenv("PAASMETER_TEST_K8S_VAR_LOG")
	podLogDir := "/var/log/pods"
	if varLog != "" {
		podLogDir = filepath.Join(varLog, "pods")
	}
	cgroupRoot := os.Getenv("PAASMETER_TEST_K8S_CGROUP_ROOT")
	if cgroupRoot == "" {
		cgroupRoot = "/sys/fs/cgroup"
	}
	f := cmd.Flags()
	f.IntSliceVar(&s.Pods, "pods", []int{10, 50, 100}, "pod counts measured, increasing (the kubelet's default bound is 110 pods a node)")
	f.DurationVar(&s.Duration, "duration", time.Minute, "how long each agent is measured (at least the 1 min usage window)")
	f.DurationVar(&s.Interval, "sample-interval", 10*time.Second, "the agents' sampling interval")
	f.StringVar(&s.Program, "paasmeter", "", "the paasmeter binary whose agent is measured (default: paasmeter in this program's directory)")
	f.StringVar(&s.Kubeconfig, "kubeconfig", os.Getenv("PAASMETER_TEST_KUBECONFIG"), "the cluster's admin kubeconfig")
	f.StringVar(&s.Node, "node", os.Getenv("PAASMETER_TEST_K8S_NODE"), "the node the pods run on, and the agent's")
	f.StringVar(&s.Image, "image", os.Getenv("PAASMETER_TEST_K8S_BUSYBOX_IMAGE"), "the pods' image, with a sleep command, on the node already (never pulled)")
	f.StringVar(&s.PodLogDir, "pod-log-dir", podLogDir, "the node's /var/log/pods as this host sees it")
	f.StringVar(&s.CgroupRoot, "cgroup-root", cgroupRoot, "the node's cgroup root as this host sees it")
	f.StringVar(&s.DockerHost, "docker-host", os.Getenv("PAASMETER_TEST_DOCKER_HOST"), "Docker Engine API address for the Docker agent beside (empty: none)")
	f.StringVar(&s.DockerImage, "docker-image", "paasmeter-test/busybox:1", "the Docker containers' image, with a sleep command")
	f.IntVar(&s.CycleRounds, "cycle-rounds", 5, "sampling rounds timed per count (the median is reported)")
	f.BoolVar(&s.NoLogs, "no-logs", false, "turn the agents' log shipping off (agent.logs.enabled: false), to tell its share of their cost")
	return cmd
}

// kubeNodeRow is one measured agent: a kind and a count.
type kubeNodeRow struct {
	kind  string
	n     int
	cost  agentCost
	cycle time.Duration
	load  string
}

func (a *app) benchKubeNode(ctx context.Context, s *kubeNodeSpec) error {
	if len(s.Pods) == 0 || !slices.IsSorted(s.Pods) || s.Pods[0] <= 0 {
		return fmt.Errorf("bench kube-node: --pods %v must be positive counts in increasing order", s.Pods)
	}
	if s.Duration < agent.DefaultConfig().Window || s.Interval < time.Second || s.CycleRounds <= 0 {
		return fmt.Errorf("bench kube-node: --duration (%s) must be at least the %s usage window, --sample-interval (%s) at least 1s, --cycle-rounds (%d) positive",
			s.Duration, agent.DefaultConfig().Window, s.Interval, s.CycleRounds)
	}
	if s.Kubeconfig == "" || s.Node == "" || s.Image == "" {
		return errors.New("bench kube-node: --kubeconfig, --node and --image are required (eval \"$(./scripts/test-deps.sh)\" sets them for the test cluster)")
	}
	program, err := agentProgram(s.Program)
	if err != nil {
		return fmt.Errorf("bench kube-node: %w", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return fmt.Errorf("bench kube-node: kubeconfig %s: %w", s.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	if err := nodeRoom(ctx, cs, s.Node, s.Pods[len(s.Pods)-1]); err != nil {
		return err
	}
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "paasmeter-bench-",
		Labels: map[string]string{kubeBenchInstitutionLabel: agentBenchTenant, kubeBenchProjectLabel: "bench", kubeBenchEnvironmentLabel: "test"}}},
		metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bench kube-node: namespace: %w", err)
	}
	defer func() {
		// Its pods go in the background: they have no grace period.
		cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	}()
	if err := waitServiceAccount(ctx, cs, ns.Name); err != nil {
		return err
	}
	reader, err := cgroups.NewReader(s.CgroupRoot)
	if err != nil {
		return err
	}
	var idle *idleContainers
	if s.DockerHost != "" {
		cli, err := client.NewClientWithOpts(client.WithHost(s.DockerHost), client.WithAPIVersionNegotiation())
		if err != nil {
			return err
		}
		defer cli.Close()
		idle = newIdleContainers(cli, s.DockerImage)
		defer idle.remove()
	}

	fmt.Fprintf(a.stdout, "kube-node: node %s, cgroup %s, sampling every %s, %s windows, logs shipped %t, each agent measured %s once it tracks its containers\n",
		s.Node, reader.Version(), s.Interval, agent.DefaultConfig().Window, !s.NoLogs, s.Duration)
	var rows []kubeNodeRow
	for _, n := range s.Pods {
		started := time.Now()
		pods, err := growPods(ctx, cs, ns.Name, s.Node, s.Image, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "kube-node: %d pods running (%s to start the new ones)\n", n, time.Since(started).Round(time.Second))
		row, err := a.kubeNodeRun(ctx, s, program, n, "kubernetes", fmt.Sprintf(
			"  kind: kubernetes\n  cgroup_root: %s\n  kubernetes:\n    kubeconfig: %s\n    pod_log_dir: %s\n    institution_label: %s\n    project_label: %s\n    environment_label: %s\n",
			s.CgroupRoot, s.Kubeconfig, s.PodLogDir, kubeBenchInstitutionLabel, kubeBenchProjectLabel, kubeBenchEnvironmentLabel),
			func() (time.Duration, error) { return podCycle(reader, pods, s.CycleRounds) })
		if err != nil {
			return err
		}
		rows = append(rows, row)
		if idle == nil {
			continue
		}
		if err := idle.grow(ctx, n); err != nil {
			return err
		}
		row, err = a.kubeNodeRun(ctx, s, program, n, "docker", fmt.Sprintf("  docker_host: %s\n", s.DockerHost),
			func() (time.Duration, error) { return dockerCycle(ctx, idle, reader, s.CycleRounds) })
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}

	fmt.Fprintf(a.stdout, "%5s  %-10s  %11s  %14s  %8s  %8s  %8s  %8s  %12s  %5s\n",
		"N", "kind", "records/min", "CPU s per min", "% core", "RSS MiB", "peak MiB", "anon MiB", "sample cycle", "load")
	for _, r := range rows {
		cpuPerMin := r.cost.cpu.Seconds() / r.cost.elapsed.Minutes()
		fmt.Fprintf(a.stdout, "%5d  %-10s  %11.0f  %14.2f  %8.2f  %8.1f  %8.1f  %8.1f  %12s  %5s\n",
			r.n, r.kind, r.cost.recordsPerMinute(), cpuPerMin, 100*cpuPerMin/60, float64(r.cost.rss)/(1<<20), float64(r.cost.peakRSS)/(1<<20),
			float64(r.cost.anonRSS)/(1<<20), r.cycle.Round(time.Microsecond), r.load)
	}
	return nil
}

// kubeNodeRun measures one agent of a kind over n containers, then times its
// sampling round with cycle.
func (a *app) kubeNodeRun(ctx context.Context, s *kubeNodeSpec, program string, n int, kind, config string,
	cycle func() (time.Duration, error)) (kubeNodeRow, error) {
	dir, err := os.MkdirTemp("", "paasmeter-bench-kube-node-")
	if err != nil {
		return kubeNodeRow{}, err
	}
	defer os.RemoveAll(dir)
	row := kubeNodeRow{kind: kind, n: n}
	if s.NoLogs {
		config += "  logs:\n    enabled: false\n"
	}
	if row.cost, err = measureAgent(ctx, agentRun{program: program, dir: dir, node: s.Node, config: config, interval: s.Interval,
		dur: s.Duration, want: n}, a.stderr); err != nil {
		return row, fmt.Errorf("bench kube-node: %s agent with %d: %w", kind, n, err)
	}
	row.load = loadAverage()
	if row.cycle, err = cycle(); err != nil {
		return row, fmt.Errorf("bench kube-node: %s sampling round of %d: %w", kind, n, err)
	}
	fmt.Fprintf(a.stderr, "kube-node: %s with %d measured (load %s)\n", kind, n, row.load)
	return row, nil
}

// agentProgram is the paasmeter binary to measure: program, or the one
// beside this program.
func agentProgram(program string) (string, error) {
	if program == "" {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		program = filepath.Join(filepath.Dir(self), "paasmeter")
	}
	// Before any container starts: a missing binary is a usage error, not a
	// failure after a minute of setup.
	if _, err := os.Stat(program); err != nil {
		return "", fmt.Errorf("the paasmeter binary (--paasmeter): %w", err)
	}
	return program, nil
}

// nodeRoom checks that the node may take want more pods: its allocatable
// pods less those bound to it that have not ended.
func nodeRoom(ctx context.Context, cs kubernetes.Interface, node string, want int) error {
	nd, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("bench kube-node: node %s: %w", node, err)
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return err
	}
	busy := 0
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			busy++
		}
	}
	if room := int(nd.Status.Allocatable.Pods().Value()) - busy; room < want {
		return fmt.Errorf("bench kube-node: node %s has room for %d more pods (%d allocatable, %d there), --pods asks for %d",
			node, room, nd.Status.Allocatable.Pods().Value(), busy, want)
	}
	return nil
}

// waitServiceAccount waits for a new namespace's default ServiceAccount,
// without which no pod may be created in it.
func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench kube-node: namespace %s has no default ServiceAccount: %w", ns, err)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// growPods creates idle pods in ns until n run, and returns them running.
func growPods(ctx context.Context, cs kubernetes.Interface, ns, node, image string, n int) ([]corev1.Pod, error) {
	have, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := len(have.Items); i < n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("idle-%03d", i), Labels: map[string]string{"app.kubernetes.io/name": fmt.Sprintf("idle-%03d", i)}},
			Spec: corev1.PodSpec{
				NodeName:                      node,
				AutomountServiceAccountToken:  new(bool),
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name: "idle", Image: image, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "86400"},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("4Mi")}},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("bench kube-node: pod %d: %w", i, err)
		}
	}
	deadline := time.Now().Add(time.Duration(n) * 10 * time.Second)
	for {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		running := 0
		for _, p := range list.Items {
			if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
				running++
			}
		}
		if running == n {
			return list.Items, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench kube-node: %d of %d pods running by the deadline", running, n)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// podCycle times the agent's sampling round of running pods: one read of
// each container's cgroup, found once beforehand as the agent finds it when
// it first sees the run. The median of rounds.
func podCycle(r *cgroups.Reader, pods []corev1.Pod, rounds int) (time.Duration, error) {
	finder := kube.NewCgroups(r, "")
	paths := make([]string, 0, len(pods))
	for _, p := range pods {
		ps, err := finder.Find(p.Status.QOSClass, string(p.UID), p.Status.ContainerStatuses[0].ContainerID)
		if err != nil {
			return 0, fmt.Errorf("pod %s: %w", p.Name, err)
		}
		paths = append(paths, "/"+ps.Container)
	}
	return medianRound(rounds, func() error {
		for _, p := range paths {
			if _, err := r.Read(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// dockerCycle times the Docker agent's sampling round of the idle
// containers: one read of each container's cgroup and of its network
// counters (the agent found the cgroup from the container's process once).
// The median of rounds.
func dockerCycle(ctx context.Context, d *idleContainers, r *cgroups.Reader, rounds int) (time.Duration, error) {
	paths, pids := make([]string, len(d.ids)), make([]int, len(d.ids))
	for i, id := range d.ids {
		in, err := d.cli.ContainerInspect(ctx, id)
		if err != nil {
			return 0, err
		}
		pids[i] = in.State.Pid
		if paths[i], err = cgroups.PathFromProc("/proc", pids[i]); err != nil {
			return 0, err
		}
	}
	return medianRound(rounds, func() error {
		for i, p := range paths {
			if _, err := r.Read(p); err != nil {
				return err
			}
			if _, _, err := cgroups.ReadNetDev("/proc", pids[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// medianRound is the median time of rounds calls of round.
func medianRound(rounds int, round func() error) (time.Duration, error) {
	times := make([]time.Duration, rounds)
	for i := range times {
		start := time.Now()
		if err := round(); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}
