package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
)

// errNotFound is what the engine methods wrap for a container or pod the
// watcher does not know, as runtime/tail and the agent test for it.
var errNotFound = cerrdefs.ErrNotFound

// Options are what a Watcher is built from.
type Options struct {
	Config Config
	// Node is the Kubernetes node's name: only the pods bound to it are
	// watched.
	Node string
	// Client reaches the API server; nil: one is made from
	// Config.Kubeconfig, or in-cluster.
	Client kubernetes.Interface
	// Cgroups reads the node's cgroups; nil: the containers' cgroups are
	// not looked for (the agent then has no counters for them).
	Cgroups *cgroups.Reader
	// ProcRoot is where the host's /proc is read, in the host's PID
	// namespace (the DaemonSet's hostPID): a pod's network counters are its
	// processes' (network.go). "": /proc.
	ProcRoot string
	Clock    clock.Clock
	Logger   *slog.Logger
	// Registry receives the watcher's metrics.
	Registry prometheus.Registerer
}

// Watcher is the Kubernetes node kind's engine: it follows the pods bound to
// its node, the namespaces, and the claims, volumes and nodes through
// client-go informers, and serves them to the agent and the tailer as
// containers and volumes (engine.Engine, tail.Engine): one container per run,
// lifecycle events from the changes of the pods' statuses, logs from the
// kubelet's CRI log files, the claims this node bills.
type Watcher struct {
	o      Options
	log    *slog.Logger
	cg     *Cgroups
	pods   cache.SharedIndexInformer
	nsList corelisters.NamespaceLister
	// The claims, their volumes and the nodes (volumes.go).
	claimList corelisters.PersistentVolumeClaimLister
	pvList    corelisters.PersistentVolumeLister
	nodeList  corelisters.NodeLister
	podFac    informers.SharedInformerFactory
	// clusterFac's informers list the whole cluster's namespaces, claims,
	// volumes and nodes.
	clusterFac informers.SharedInformerFactory
	// synced is closed once both caches are filled.
	synced chan struct{}

	unmetered, unmeteredClaims *prometheus.GaugeVec

	mu   sync.Mutex
	subs map[*subscriber]bool
	// invalidClaims are the claims whose labels were found not valid at the
	// last listing of the volumes, and logged.
	invalidClaims map[types.UID]bool
	// ready wakes the probe loop when a container's readiness changed.
	ready chan struct{}
}

// New builds a Watcher; Run starts it.
func New(o Options) (*Watcher, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	if o.Node == "" {
		return nil, errors.New("kubernetes: the node's name is required")
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Client == nil {
		var rc *rest.Config
		var err error
		if o.Config.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", o.Config.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kubernetes: API server: %w", err)
		}
		rc.UserAgent = "paasmeter-agent"
		if o.Client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kubernetes: client: %w", err)
		}
	}
	w := &Watcher{o: o, log: o.Logger, synced: make(chan struct{}), subs: map[*subscriber]bool{}, ready: make(chan struct{}, 1)}
	if o.Cgroups != nil {
		w.cg = NewCgroups(o.Cgroups, o.Config.CgroupDriver)
	}
	w.unmetered = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_agent_kubernetes_unmetered_pods",
		Help: "Pods on this node that are not metered, by reason: no_institution (their namespace has no institution label), invalid_labels (a label is not a valid name)."},
		[]string{"reason"})
	w.unmeteredClaims = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_agent_kubernetes_unmetered_claims",
		Help: "Bound persistent volume claims this node bills (each claim has one owner node) that are not metered, by reason, as for pods; an invalid_labels claim's app is its app label, or its name when it has none."},
		[]string{"reason"})
	for _, g := range []*prometheus.GaugeVec{w.unmetered, w.unmeteredClaims} {
		if err := o.Registry.Register(g); err != nil {
			return nil, err
		}
	}
	w.podFac = informers.NewSharedInformerFactoryWithOptions(o.Client, o.Config.ResyncPeriod,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.FieldSelector = "spec.nodeName=" + o.Node }))
	w.clusterFac = informers.NewSharedInformerFactory(o.Client, o.Config.ResyncPeriod)
	w.pods = w.podFac.Core().V1().Pods().Informer()
	if err := w.pods.AddIndexers(cache.Indexers{byContainerID: containerIDs}); err != nil {
		return nil, fmt.Errorf("kubernetes: pod informer: %w", err)
	}
	core := w.clusterFac.Core().V1()
	w.nsList = core.Namespaces().Lister()
	w.claimList = core.PersistentVolumeClaims().Lister()
	w.pvList = core.PersistentVolumes().Lister()
	w.nodeList = core.Nodes().Lister()
	if _, err := w.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.changed(nil, asPod(obj)) },
		UpdateFunc: func(old, cur any) { w.changed(asPod(old), asPod(cur)) },
		DeleteFunc: func(obj any) { w.deleted(asPod(obj)) },
	}); err != nil {
		return nil, fmt.Errorf("kubernetes: pod informer: %w", err)
	}
	return w, nil
}

func asPod(obj any) *corev1.Pod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

// Run fills the caches and keeps them current until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	w.clusterFac.StartWithContext(ctx)
	w.podFac.StartWithContext(ctx)
	defer w.podFac.Shutdown()
	defer w.clusterFac.Shutdown()
	for _, f := range []informers.SharedInformerFactory{w.clusterFac, w.podFac} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("kubernetes: the %s cache did not fill", typ)
			}
		}
	}
	w.log.Info("watching the node's pods", "node", w.o.Node)
	close(w.synced)
	w.count()
	<-ctx.Done()
	return nil
}

// wait returns once the caches are filled, or with ctx's error.
func (w *Watcher) wait(ctx context.Context) error {
	select {
	case <-w.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// metered is one run of a metered pod.
type metered struct {
	pod *corev1.Pod
	run Run
	id  Identity
}

// runs returns the runs of the metered pods in the cache.
func (w *Watcher) runs() []metered {
	var out []metered
	for _, obj := range w.pods.GetStore().List() {
		pod := asPod(obj)
		if pod == nil {
			continue
		}
		for _, r := range Runs(pod) {
			if id, err := w.identity(pod, r.Container); err == nil {
				out = append(out, metered{pod, r, id})
			}
		}
	}
	return out
}

func (w *Watcher) identity(pod *corev1.Pod, container string) (Identity, error) {
	ns, err := w.nsList.Get(pod.Namespace)
	if apierrors.IsNotFound(err) {
		// The namespaces' watch runs behind the pods' when a namespace and
		// its first pods are created together: a 3 s Job can start and end
		// before its namespace reaches the cache, and its pod's cgroup is
		// gone seconds later. Its run is not left unmetered for that: the
		// API server is asked.
		ctx, cancel := context.WithTimeout(context.Background(), namespaceLookupTimeout)
		defer cancel()
		ns, err = w.o.Client.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
	}
	if err != nil {
		return Identity{}, fmt.Errorf("namespace %s: %w", pod.Namespace, err)
	}
	return w.o.Config.Identity(ns, pod, container)
}

// namespaceLookupTimeout bounds asking the API server for a namespace the
// cache has not seen yet.
const namespaceLookupTimeout = 5 * time.Second

// count sets the unmetered pods' gauge from the cache.
func (w *Watcher) count() {
	n := map[string]float64{"no_institution": 0, "invalid_labels": 0}
	for _, obj := range w.pods.GetStore().List() {
		if pod := asPod(obj); pod != nil {
			switch _, err := w.identity(pod, podApp(pod)); {
			case errors.Is(err, ErrNotMetered):
				n["no_institution"]++
			case err != nil:
				n["invalid_labels"]++
			}
		}
	}
	for reason, v := range n {
		w.unmetered.WithLabelValues(reason).Set(v)
	}
}

// podApp names a pod's first container, which stands for the app of a pod
// without the app label.
func podApp(pod *corev1.Pod) string {
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0].Name
	}
	return ""
}

// container turns a metered run into the agent's container, with its cgroups.
func (w *Watcher) container(m metered) (engine.Container, error) {
	var paths Paths
	if w.cg != nil {
		var err error
		paths, err = w.cg.Find(m.pod.Status.QOSClass, string(m.pod.UID), m.run.ContainerID)
		if err != nil && m.run.Running && !errors.Is(err, cgroups.ErrNotFound) {
			w.log.Warn("cgroup of a pod's container not found", "pod", m.pod.Namespace+"/"+m.pod.Name, "container", m.run.Container, "err", err)
		}
	}
	c, err := Container(m.pod, m.run, m.id, paths, RunParentEligible(m.pod))
	if err == nil && m.run.Running && paths.Container != "" && NetworkRun(m.pod, m.run) {
		if pid := w.initPid(m, paths.Container); pid > 0 {
			c.Pid, c.NetShared = pid, m.run.N > 0
		}
	}
	return c, err
}

// List returns every run of the metered pods on this node.
func (w *Watcher) List(ctx context.Context) ([]engine.Container, error) {
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	var out []engine.Container
	for _, m := range w.runs() {
		if c, err := w.container(m); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// byContainerID indexes the node's pods by their runs' container ids: the
// log follower of every container asks four times a second whether its run
// goes on, and walking every run of the node for it made the agent's CPU grow
// with the square of its pods (docs/benchmarks.md, one Kubernetes node).
const byContainerID = "containerID"

// containerIDs are the ids (without the runtime) of a pod's runs.
func containerIDs(obj any) ([]string, error) {
	pod := asPod(obj)
	if pod == nil {
		return nil, nil
	}
	var ids []string
	for _, r := range Runs(pod) {
		if _, id, err := SplitContainerID(r.ContainerID); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// run returns the pod and run of a container id, metered or not.
func (w *Watcher) run(id string) (*corev1.Pod, Run, bool) {
	objs, err := w.pods.GetIndexer().ByIndex(byContainerID, id)
	if err != nil { // only for an index that does not exist
		return nil, Run{}, false
	}
	for _, obj := range objs {
		pod := asPod(obj)
		if pod == nil {
			continue
		}
		for _, r := range Runs(pod) {
			if _, cid, err := SplitContainerID(r.ContainerID); err == nil && cid == id {
				return pod, r, true
			}
		}
	}
	return nil, Run{}, false
}

// find returns the metered run of a container id.
func (w *Watcher) find(ctx context.Context, id string) (metered, error) {
	if err := w.wait(ctx); err != nil {
		return metered{}, err
	}
	pod, r, ok := w.run(id)
	if !ok {
		return metered{}, errUnknownContainer(id)
	}
	mid, err := w.identity(pod, r.Container)
	if err != nil {
		return metered{}, errUnknownContainer(id)
	}
	return metered{pod, r, mid}, nil
}

// Inspect returns the run of a container id, while its pod's status tells
// of it.
func (w *Watcher) Inspect(ctx context.Context, id string) (engine.Container, error) {
	m, err := w.find(ctx, id)
	if err != nil {
		return engine.Container{}, err
	}
	return w.container(m)
}

// Stats is not offered: the kubelet's summary API is no faster than the
// cgroup files the agent reads, and without those it has no counters either.
func (w *Watcher) Stats(context.Context, string) (engine.Stats, error) {
	return engine.Stats{}, fmt.Errorf("kubernetes: no stats API: %w", errors.ErrUnsupported)
}

// Logs reads a run's output from the kubelet's CRI log files, from since on,
// following them while the run goes on when follow is set.
func (w *Watcher) Logs(ctx context.Context, id string, since time.Time, follow bool, fn func(engine.LogMessage) error) error {
	m, err := w.find(ctx, id)
	if err != nil {
		return err
	}
	file := LogFile(w.o.Config.PodLogDir, m.pod.Namespace, m.pod.Name, string(m.pod.UID), m.run.Container, m.run.N)
	r := newCRIReader(since, fn)
	running := func() bool {
		_, r, ok := w.run(id)
		return ok && r.Running
	}
	err = r.follow(ctx, file, follow, running)
	if r.bad > 0 {
		w.log.Warn("lines not in the CRI log format skipped", "file", file, "lines", r.bad)
	}
	if err != nil {
		return fmt.Errorf("kubernetes: logs of %s: %w", id, err)
	}
	return nil
}

// labels are an event's container labels, as Docker's events carry them.
func (w *Watcher) labels(pod *corev1.Pod, id Identity) func(Run) map[string]string {
	return func(r Run) map[string]string {
		return map[string]string{engine.LabelTenant: id.Tenant, engine.LabelProject: id.Project, engine.LabelApp: id.App,
			engine.LabelEnv: string(id.Env), engine.LabelRun: RunID(string(pod.UID), r.Container, r.N), engine.LabelReplica: Replica(pod, r)}
	}
}

// podEvents are the events of a metered pod's change; none for a pod that is
// not metered.
func (w *Watcher) podEvents(old, cur *corev1.Pod, since time.Time) []engine.Event {
	pod := cur
	if pod == nil {
		pod = old
	}
	var evs []engine.Event
	// The identity is per container (the app may fall back to its name).
	for _, name := range containerNames(pod) {
		id, err := w.identity(pod, name)
		if err != nil {
			continue
		}
		evs = append(evs, Changes(only(old, name), only(cur, name), since, w.labels(pod, id))...)
	}
	slices.SortStableFunc(evs, func(a, b engine.Event) int { return a.Time.Compare(b.Time) })
	return evs
}

func containerNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// only is a copy of pod whose status has the named container's alone.
func only(pod *corev1.Pod, name string) *corev1.Pod {
	if pod == nil {
		return nil
	}
	p := *pod
	keep := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var out []corev1.ContainerStatus
		for _, cs := range in {
			if cs.Name == name {
				out = append(out, cs)
			}
		}
		return out
	}
	p.Status.InitContainerStatuses = keep(pod.Status.InitContainerStatuses)
	p.Status.ContainerStatuses = keep(pod.Status.ContainerStatuses)
	return &p
}

// changed turns a pod's change into events for the subscribers, and wakes
// the probe loop when a container's readiness changed.
func (w *Watcher) changed(old, cur *corev1.Pod) {
	if cur == nil {
		return
	}
	w.broadcast(w.podEvents(old, cur, time.Time{}))
	if old == nil || readiness(old) != readiness(cur) {
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
	w.count()
}

// readiness is a pod's containers' readiness, as a comparable string.
func readiness(pod *corev1.Pod) string {
	b := make([]byte, 0, len(pod.Status.ContainerStatuses))
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Ready {
			b = append(b, '1')
		} else {
			b = append(b, '0')
		}
	}
	return string(b)
}

// deleted tells the removal of every run of a pod gone from the API server.
func (w *Watcher) deleted(pod *corev1.Pod) {
	if pod == nil {
		return
	}
	var evs []engine.Event
	for _, name := range containerNames(pod) {
		if id, err := w.identity(pod, name); err == nil {
			evs = append(evs, Removed(only(pod, name), w.labels(pod, id))...)
		}
	}
	w.broadcast(evs)
	w.count()
}

// subscriber is one Events stream: events wait in queue, so a slow reader
// never holds up the informer.
type subscriber struct {
	mu    sync.Mutex
	queue []engine.Event
	wake  chan struct{}
}

func (s *subscriber) push(evs []engine.Event) {
	if len(evs) == 0 {
		return
	}
	s.mu.Lock()
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) broadcast(evs []engine.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs {
		s.push(evs)
	}
}

// Events streams the events of the metered pods' runs: first those the pods'
// statuses tell from since on (the API server keeps no history: a run that
// started and was removed while nobody watched is not told), then every
// change as it comes, until ctx ends.
func (w *Watcher) Events(ctx context.Context, since time.Time) (<-chan engine.Event, <-chan error) {
	out, errs := make(chan engine.Event), make(chan error, 1)
	go func() {
		defer close(out)
		if err := w.wait(ctx); err != nil {
			return
		}
		s := &subscriber{wake: make(chan struct{}, 1)}
		// Subscribed before the cache is read: a change in between comes
		// twice, which a replay is anyway, rather than never.
		w.mu.Lock()
		w.subs[s] = true
		w.mu.Unlock()
		defer func() {
			w.mu.Lock()
			delete(w.subs, s)
			w.mu.Unlock()
		}()
		var replay []engine.Event
		for _, obj := range w.pods.GetStore().List() {
			if pod := asPod(obj); pod != nil {
				replay = append(replay, w.podEvents(nil, pod, since)...)
			}
		}
		slices.SortStableFunc(replay, func(a, b engine.Event) int { return a.Time.Compare(b.Time) })
		s.mu.Lock()
		s.queue = append(replay, s.queue...)
		s.mu.Unlock()
		for {
			s.mu.Lock()
			next := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, ev := range next {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errs
}

// Probe tells the SLA the readiness of the metered running containers that
// have a readiness probe, as probe results (the kubelet runs the probes; the
// agent reports what it found): at every change of a pod's readiness and
// every period in between, so the results never go stale while the
// container runs. It returns when ctx ends.
func (w *Watcher) Probe(ctx context.Context, every time.Duration, emit func([]events.Event)) {
	if w.wait(ctx) != nil {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	// The first results wait a period: the agent, which makes them
	// durable, first loads the state its predecessor saved.
	select {
	case <-ctx.Done():
		return
	case <-tick.C:
	}
	for {
		if evs := w.probes(w.o.Clock.Now()); len(evs) > 0 {
			emit(evs)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.ready:
		}
	}
}

// probes are the probe results of the running containers at now.
func (w *Watcher) probes(now time.Time) []events.Event {
	var evs []events.Event
	for _, m := range w.runs() {
		if e, ok := ProbeEvent(m.pod, m.run, m.id, w.o.Node, now); ok {
			evs = append(evs, e)
		}
	}
	return evs
}

// ProbeEvent is the probe result of a running container with a readiness
// probe: passing when the kubelet has it ready. Its kind is the probe's
// (gRPC health checks, which run over HTTP/2, count as http).
func ProbeEvent(pod *corev1.Pod, r Run, id Identity, node string, now time.Time) (events.Event, bool) {
	s := spec(pod, r)
	if !r.Running || r.Init || s == nil || s.ReadinessProbe == nil {
		return events.Event{}, false
	}
	_, cid, err := SplitContainerID(r.ContainerID)
	if err != nil {
		return events.Event{}, false
	}
	kind := "http"
	switch h := s.ReadinessProbe.ProbeHandler; {
	case h.TCPSocket != nil:
		kind = "tcp"
	case h.Exec != nil:
		kind = "exec"
	}
	res := &events.ProbeResult{OK: r.Ready, Kind: kind}
	if !r.Ready {
		res.Detail = "not ready: the kubelet's readiness probe fails"
	}
	e := events.Event{SchemaVersion: events.SchemaVersion, Tenant: id.Tenant, Project: id.Project, App: id.App, Environment: id.Env,
		Node: node, ContainerID: cid, RunID: RunID(string(pod.UID), r.Container, r.N), Replica: Replica(pod, r),
		Type: events.Probe, Time: now.UTC(), Probe: res}
	e.SetID()
	return e, true
}
