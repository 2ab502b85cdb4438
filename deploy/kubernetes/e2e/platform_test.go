package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/runtime/cgroups/cgroupstest"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/usage"
)

// The example platform's labels (docs/kubernetes-agent.md).
const (
	institutionLabel = "paasmeter.io/institution"
	projectLabel     = "paasmeter.io/project"
	environmentLabel = "paasmeter.io/environment"
	appLabel         = "app.kubernetes.io/name"
)

// chatterLines is how many numbered lines the chatter pod prints, ten a
// second: the agent is killed while it prints them.
const chatterLines = 300

// workload is one app of the example platform and what the test knows of
// it from elsewhere than paasmeter: its pods as the API server last told
// them, the lines it prints, the kernel's count of its CPU time.
type workload struct {
	tenant, project, app string
	pods                 []corev1.Pod
	// stdout and stderr are the lines each run prints, in order.
	stdout, stderr []string
	// cpu follows the pod's cgroup of a pod of one run (nil: none).
	cpu *podCPU
	// cpuNs is the kernel's count once the run is over.
	cpuNs uint64
	// claim is the claim it holds, bound to volume (nil: none).
	claim  *corev1.PersistentVolumeClaim
	volume *corev1.PersistentVolume
	// exit is the exit code every run of it ends with; oom, that the kernel
	// killed it.
	exit int
	oom  bool
}

// TestTheExamplePlatformIsMeteredOnARealCluster deploys paasmeter on the
// test cluster with the overlay, runs an example platform of two
// institutions as Kubernetes objects (a production Deployment of two
// replicas with a readiness probe, a 3 s Job, a pod the kernel OOM-kills, a
// crash-looping pod, pods that print known lines, a claim on a volume),
// SIGKILLs the agent and deletes its pod while pods run and print, and
// checks what the collector tells against the kernel's counters and the API
// server's times: CPU to the kernel's count, container-seconds to the pods'
// start and finish, one started and one died per run, the OOM kill and the
// crash loop's restarts, every line once in order, the production app's SLA
// minutes all up, each usage record of a run once.
func TestTheExamplePlatformIsMeteredOnARealCluster(t *testing.T) {
	t0 := time.Now()
	cl := kubetest.New(t)
	img := kubetest.PaasmeterImage(t)
	cl.LoadImage(t, img.Path)
	d := deploy(t, cl, img)
	begin := time.Now()
	t.Logf("paasmeter built, loaded and deployed in %v", time.Since(t0).Round(time.Second))
	root := cgroupstest.CPURoot(t, cl.CgroupRoot)
	ctx := context.Background()
	apis := map[string]api{"caami": {d.url, "caami", caamiToken}, "ona": {d.url, "ona", onaToken}}

	prod := cl.Namespace(t, map[string]string{institutionLabel: "caami", projectLabel: "e2e-portal", environmentLabel: "prod"})
	batch := cl.Namespace(t, map[string]string{institutionLabel: "caami", projectLabel: "e2e-batch", environmentLabel: "test"})
	allocations := cl.Namespace(t, map[string]string{institutionLabel: "ona", projectLabel: "e2e-allocations", environmentLabel: "dev"})

	// The production app first: its SLA minutes take longest to settle.
	web := &workload{tenant: "caami", project: "e2e-portal", app: "web", stdout: []string{"web up"}}
	create(t, cl.Client.AppsV1().Deployments(prod).Create, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{appLabel: "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{appLabel: "web"}},
				Spec: podSpec(cl, corev1.RestartPolicyAlways, corev1.Container{Name: "web",
					Command: []string{"sh", "-c", "echo web up; exec sleep 3600"},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
						PeriodSeconds: 2},
					Resources: kubetest.Resources("10m", "8Mi", "", "")}),
			},
		},
	})

	// A 3 s Job that burns CPU, and a pod that burns it for 30 s, across
	// the agent's death: both are billed to the kernel's count.
	report := &workload{tenant: "caami", project: "e2e-batch", app: "report", stdout: []string{"report start", "report done"}}
	create(t, cl.Client.BatchV1().Jobs(batch).Create, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{appLabel: "report"}},
				Spec: podSpec(cl, corev1.RestartPolicyNever, corev1.Container{Name: "report",
					Command:   []string{"sh", "-c", burn(3, "report")},
					Resources: kubetest.Resources("100m", "16Mi", "1", "64Mi")}),
			},
		},
	})
	burner := &workload{tenant: "caami", project: "e2e-batch", app: "burner", stdout: []string{"burner start", "burner done"}}
	burnerPod := createPod(t, cl, batch, "burner", corev1.RestartPolicyNever, corev1.Container{
		Command: []string{"sh", "-c", burn(30, "burner")}, Resources: kubetest.Resources("100m", "16Mi", "1", "64Mi")})
	burner.cpu = followCPU(root, burnerPod)
	reportPod := waitPods(t, cl, batch, selector("job-name", "report"), time.Minute, "created", func(p []*corev1.Pod) bool { return len(p) == 1 })[0]
	report.cpu = followCPU(root, reportPod)

	// The kernel's OOM killer: a 64 MiB buffer under a 32 MiB limit. It
	// waits before allocating because containerd 1.6's shim watches the
	// cgroup for OOM kills only once the task has started: a process killed
	// before that is reported "Error", not "OOMKilled" (containerd#8180),
	// and so is its event, since the agent takes the kubelet's reason.
	hog := &workload{tenant: "caami", project: "e2e-batch", app: "hog", stdout: []string{"allocating"}, exit: 137, oom: true}
	createPod(t, cl, batch, "hog", corev1.RestartPolicyNever, corev1.Container{
		Command:   []string{"sh", "-c", "sleep 2; echo allocating; dd if=/dev/zero of=/dev/null bs=64M count=1"},
		Resources: kubetest.Resources("10m", "32Mi", "", "32Mi")})
	// A crash loop: each run prints a line and exits 1.
	crasher := &workload{tenant: "caami", project: "e2e-batch", app: "crasher", stdout: []string{"crash run"}, exit: 1}
	createPod(t, cl, batch, "crasher", corev1.RestartPolicyAlways, corev1.Container{
		Command: []string{"sh", "-c", "echo crash run; exit 1"}, Resources: kubetest.Resources("10m", "8Mi", "", "")})
	// Numbered lines on stdout, ten a second, and a last one on stderr.
	chatter := &workload{tenant: "caami", project: "e2e-batch", app: "chatter", stderr: []string{"chatter done"}}
	for i := 1; i <= chatterLines; i++ {
		chatter.stdout = append(chatter.stdout, fmt.Sprintf("chatter line %d", i))
	}
	createPod(t, cl, batch, "chatter", corev1.RestartPolicyNever, corev1.Container{
		Command:   []string{"sh", "-c", fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "chatter line $i"; [ $((i %% 10)) -eq 0 ] && sleep 1; i=$((i+1)); done; echo "chatter done" >&2`, chatterLines)},
		Resources: kubetest.Resources("10m", "8Mi", "", "")})
	// The other institution: a service that writes to its claim, prints
	// and stays up, holding the claim.
	ledger := &workload{tenant: "ona", project: "e2e-allocations", app: "ledger", stdout: []string{"ledger open", "ledger written"}}
	createClaim(t, cl, allocations, ledger)
	createPod(t, cl, allocations, "ledger", corev1.RestartPolicyNever, corev1.Container{
		Command:      []string{"sh", "-c", "echo ledger open; echo entry > /data/ledger.txt && echo ledger written; exec sleep 3600"},
		Resources:    kubetest.Resources("10m", "8Mi", "", ""),
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
		corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}})

	cl.WaitDeployment(t, prod, "web", 2*time.Minute, "two replicas Ready", func(d *appsv1.Deployment) bool { return d.Status.ReadyReplicas == 2 })
	webReady := time.Now()

	// The Job is over and billed before the agent dies: a run that ends
	// while the agent is down is billed to its last sample if the kubelet
	// removes its pod's cgroup before the agent is back.
	report.pods = waitPodsOver(t, cl, batch, selector("job-name", "report"))
	var err error
	if report.cpuNs, err = report.cpu.final(10 * time.Second); err != nil {
		t.Fatalf("report: the kernel's count: %v", err)
	}
	testenv.Eventually(t, time.Minute, "report's CPU billed", func() error {
		billed, err := apis["caami"].usageByApp(ctx, begin.Add(-time.Hour), time.Now().Add(time.Hour))
		if err == nil && !near(billed[report.project+"/"+report.app][usage.MeterCPU], int64(report.cpuNs)) {
			err = fmt.Errorf("%d ns billed, the kernel counted %d", billed[report.project+"/"+report.app][usage.MeterCPU], report.cpuNs)
		}
		return err
	})

	// The agent dies mid-run: SIGKILL, so nothing it holds is flushed, and
	// its pod deleted at once, so its successor is a new pod that has only
	// the host path's state, while chatter prints and burner burns.
	cl.WaitPod(t, batch, "burner", time.Minute, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	cl.WaitPod(t, batch, "chatter", time.Minute, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	old := agentPod(t, cl, "")
	killContainer(t, root, old, "agent")
	deletePod(t, cl, old)
	killed := time.Now()
	agentPod(t, cl, string(old.UID))
	t.Logf("the agent was killed %v after the platform started; its new pod runs %v later", killed.Sub(begin).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// Every run over, but web's and ledger's: the crash loop after its third
	// run, which is then deleted before the kubelet starts a fourth.
	ended := func(ns, name string) []corev1.Pod {
		p := cl.WaitPodPhase(t, ns, name, 2*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
		return []corev1.Pod{*p}
	}
	burner.pods = ended(batch, "burner")
	hog.pods = ended(batch, "hog")
	chatter.pods = ended(batch, "chatter")
	cl.WaitPod(t, allocations, "ledger", 2*time.Minute, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	ledger.pods = podsOf(t, cl, allocations, selector(appLabel, "ledger"))
	claim, err := cl.Client.CoreV1().PersistentVolumeClaims(allocations).Get(ctx, claimName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Status.Phase != corev1.ClaimBound {
		t.Fatalf("claim %s is %s with its pod running", claimName, claim.Status.Phase)
	}
	ledger.claim = claim
	crashed := cl.WaitPod(t, batch, "crasher", 2*time.Minute, "after its third run", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 2 && cs[0].State.Running == nil
	})
	deletePod(t, cl, crashed)
	crasher.pods = []corev1.Pod{*crashed}
	web.pods = podsOf(t, cl, prod, selector(appLabel, "web"))
	if cs := hog.pods[0].Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.Reason != "OOMKilled" {
		t.Fatalf("hog was not OOM-killed: %+v", cs)
	}
	if burner.cpuNs, err = burner.cpu.final(10 * time.Second); err != nil {
		t.Fatalf("burner: the kernel's count: %v", err)
	}

	all := []*workload{web, report, burner, hog, crasher, chatter, ledger}
	testenv.Eventually(t, 2*time.Minute, "the collector's account of the platform", func() error {
		if problems := check(ctx, d, apis, all, begin); len(problems) > 0 {
			return fmt.Errorf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
		}
		return nil
	})
	billed, err := apis["caami"].usageByApp(ctx, begin.Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the platform ran and was checked in %v; CPU billed (by the kernel's count): report %v (%v), burner %v (%v)",
		time.Since(begin).Round(time.Second), time.Duration(billed["e2e-batch/report"][usage.MeterCPU]), time.Duration(report.cpuNs),
		time.Duration(billed["e2e-batch/burner"][usage.MeterCPU]), time.Duration(burner.cpuNs))

	// The production app's SLA minutes: every minute the report has
	// settled is up, the agent's death included. The minute its replicas
	// became Ready in is the first with them (a minute counts from its
	// app's first event, and its seconds before are not down), and settles
	// a minute after it ends.
	loc, err := time.LoadLocation("Europe/Brussels") // the overlay's time_zone
	if err != nil {
		t.Fatal(err)
	}
	first := webReady.Truncate(time.Minute)
	var minutes *sla.AppMinutes
	testenv.Eventually(t, 4*time.Minute, "web's SLA minutes", func() error {
		rep, err := apis["caami"].sla(ctx, calendar.MonthOf(webReady, loc).String())
		if err != nil {
			return err
		}
		if rep.Until.Before(first.Add(time.Minute)) {
			return fmt.Errorf("the report covers up to %s, not yet the minute from %s", rep.Until, first)
		}
		for i, a := range rep.Apps {
			if a.Project == web.project && a.App == web.app {
				minutes = &rep.Apps[i]
				return nil
			}
		}
		return fmt.Errorf("no e2e-portal/web in the report: %+v", rep.Apps)
	})
	if minutes.Up < 1 || minutes.DownPlatform != 0 || minutes.DownTenant != 0 || minutes.Up != minutes.Eligible {
		t.Errorf("web's SLA minutes: %d eligible, %d up, %d down (platform), %d down (tenant), outages %+v: want every eligible minute up",
			minutes.Eligible, minutes.Up, minutes.DownPlatform, minutes.DownTenant, minutes.Outages)
	}
	t.Logf("web's SLA: %d minutes up of %d eligible; the test took %v", minutes.Up, minutes.Eligible, time.Since(t0).Round(time.Second))
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// burn is a shell script that prints "<name> start", keeps a CPU busy for
// about secs seconds and prints "<name> done".
func burn(secs int, name string) string {
	return fmt.Sprintf(`echo %[2]s start; end=$(($(date +%%s)+%[1]d)); while [ $(date +%%s) -lt $end ]; do :; done; echo %[2]s done`, secs, name)
}

// podSpec runs c on the node's busybox image.
func podSpec(cl *kubetest.Cluster, restart corev1.RestartPolicy, c corev1.Container, volumes ...corev1.Volume) corev1.PodSpec {
	c.Image, c.ImagePullPolicy = cl.Busybox, corev1.PullNever
	return corev1.PodSpec{RestartPolicy: restart, AutomountServiceAccountToken: ptr(false), TerminationGracePeriodSeconds: ptr(int64(1)),
		Containers: []corev1.Container{c}, Volumes: volumes}
}

// createPod creates pod ns/app of one container, named app too, labelled app.
func createPod(t *testing.T, cl *kubetest.Cluster, ns, app string, restart corev1.RestartPolicy, c corev1.Container, volumes ...corev1.Volume) *corev1.Pod {
	t.Helper()
	c.Name = app
	return create(t, cl.Client.CoreV1().Pods(ns).Create, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: app, Labels: map[string]string{appLabel: app}},
		Spec:       podSpec(cl, restart, c, volumes...),
	})
}

// create creates obj through a typed client's Create.
func create[T any](t *testing.T, fn func(context.Context, T, metav1.CreateOptions) (T, error), obj T) T {
	t.Helper()
	out, err := fn(context.Background(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %T: %v", obj, err)
	}
	return out
}

// claimName is the ledger's claim.
const claimName = "ledger-data"

// createClaim creates w's claim in ns, bound to a static host path volume of
// 1 GiB made for it (the cluster has no provisioner).
func createClaim(t *testing.T, cl *kubetest.Cluster, ns string, w *workload) {
	t.Helper()
	w.volume = create(t, cl.Client.CoreV1().PersistentVolumes().Create, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "paasmeter-e2e-" + ns},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: stateDir + "/volumes/" + ns, Type: ptr(corev1.HostPathDirectoryOrCreate)}},
			ClaimRef: &corev1.ObjectReference{Namespace: ns, Name: claimName},
		},
	})
	t.Cleanup(func() {
		if err := cl.Client.CoreV1().PersistentVolumes().Delete(context.Background(), w.volume.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete volume %s: %v", w.volume.Name, err)
		}
	})
	// Its app is the ledger's (docs/kubernetes-agent.md: a claim's app is its label's).
	create(t, cl.Client.CoreV1().PersistentVolumeClaims(ns).Create, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claimName, Labels: map[string]string{appLabel: w.app}},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr(""),
			VolumeName:       w.volume.Name,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	})
}

// waitPodsOver waits for the one pod selector selects in ns to end.
func waitPodsOver(t *testing.T, cl *kubetest.Cluster, ns, sel string) []corev1.Pod {
	t.Helper()
	pods := waitPods(t, cl, ns, sel, 2*time.Minute, "over", func(p []*corev1.Pod) bool {
		return len(p) == 1 && (p[0].Status.Phase == corev1.PodSucceeded || p[0].Status.Phase == corev1.PodFailed)
	})
	return []corev1.Pod{*pods[0]}
}
