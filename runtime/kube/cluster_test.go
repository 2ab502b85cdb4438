package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
)

// runWatcher runs a watcher of the test cluster's node, with its cgroups,
// until the test ends.
func runWatcher(t *testing.T, cl *kubetest.Cluster) *Watcher {
	t.Helper()
	r, err := cgroups.NewReader(cl.CgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{Config: DefaultConfig(), Node: cl.Node, Client: cl.Client, Cgroups: r, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w
}

// TestABoundClaimIsAVolumeOfItsCapacityUntilItIsDeleted binds a claim of
// 1 GiB to a 2 GiB volume (static: the test cluster has no provisioner), in
// an institution's namespace, mounts it in a pod, and checks the watcher
// lists it with the volume's capacity, and no more once the claim is deleted.
func TestABoundClaimIsAVolumeOfItsCapacityUntilItIsDeleted(t *testing.T) {
	cl := kubetest.New(t)
	ns := cl.Namespace(t, map[string]string{"paasmeter.io/institution": "caami", "paasmeter.io/project": "claims", "paasmeter.io/environment": "prod"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := runWatcher(t, cl)

	// A class of the test's own on both sides, and the claim named on the
	// volume: it binds to this claim alone.
	class := ns
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: ns + "-data"},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: "data"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: t.TempDir(), Type: ptr(corev1.HostPathDirectoryOrCreate)}}}}
	if _, err := cl.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "pgdata"}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := cl.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr(false), NodeName: cl.Node, TerminationGracePeriodSeconds: ptr(int64(0)),
			Containers: []corev1.Container{{Name: "db", Image: cl.Busybox, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"/bin/sh", "-c", "echo row > /data/table && sleep 3600"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl.WaitPodPhase(t, ns, "db", 2*time.Minute, corev1.PodRunning)

	name := ns + ":data"
	volume := func() (engine.Volume, bool, string) {
		list, err := w.Volumes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range list {
			if v.Name == name {
				return v, true, fmt.Sprintf("%+v", list)
			}
		}
		return engine.Volume{}, false, fmt.Sprintf("%+v", list)
	}
	testenv.Eventually(t, time.Minute, "listed", func() error {
		if _, ok, s := volume(); !ok {
			return errors.New(s)
		}
		return nil
	})
	v, _, _ := volume()
	if want := (engine.Volume{Name: name, Tenant: "caami", Project: "claims", App: "pgdata", Env: "prod", SizeBytes: 2 << 30, Node: cl.Node,
		CreatedAt: v.CreatedAt}); v != want || v.CreatedAt.IsZero() || time.Since(v.CreatedAt) > 2*time.Minute {
		t.Errorf("volume %+v, want %+v bound within the test", v, want)
	}

	// The claim is released when its pod is gone (the claim's protection
	// holds it until then).
	if err := cl.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Client.CoreV1().Pods(ns).Delete(ctx, "db", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, "gone once the claim is deleted", func() error {
		if _, ok, s := volume(); ok {
			return errors.New(s)
		}
		return nil
	})
}

// TestAPodsNetworkBytesAreReadOnceFromItsFirstContainersProcess serves a
// download on the node's address and takes an upload there, from a pod of
// two containers in an institution's namespace, and checks what the agent
// reads for the pod: the network counters of its first container's process
// cover both transfers, and the second container has no process, so the
// pod's bytes are billed once.
func TestAPodsNetworkBytesAreReadOnceFromItsFirstContainersProcess(t *testing.T) {
	cl := kubetest.New(t)
	ns := cl.Namespace(t, map[string]string{"paasmeter.io/institution": "caami", "paasmeter.io/project": "web", "paasmeter.io/environment": "test"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := runWatcher(t, cl)

	node, err := cl.Client.CoreV1().Nodes().Get(ctx, cl.Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	// The node's address is its CNI bridge's, which its pods reach.
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	const down, up = 3 << 20, 1 << 20
	uploaded := make(chan int64, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /down", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Length", fmt.Sprint(down))
		rw.Write(make([]byte, down))
	})
	mux.HandleFunc("POST /up", func(_ http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		uploaded <- n
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	url := "http://" + ln.Addr().String()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr(false), NodeName: cl.Node, TerminationGracePeriodSeconds: ptr(int64(0)),
			Containers: []corev1.Container{
				{Name: "web", Image: cl.Busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"/bin/sh", "-c", strings.Join([]string{
					"wget -q -O /dev/null " + url + "/down",
					// Text: busybox's wget sends a file up to its first NUL.
					fmt.Sprintf("yes paasmeter | head -c %d > /tmp/up", up),
					"wget -q -O /dev/null --post-file=/tmp/up " + url + "/up",
					"exec sleep 3600"}, " && ")}},
				{Name: "side", Image: cl.Busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}},
			}}}
	created, err := cl.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-uploaded:
		if n != up {
			t.Fatalf("uploaded %d bytes, want %d", n, up)
		}
	case <-ctx.Done():
		t.Fatal("the pod never uploaded")
	}
	cl.WaitPod(t, ns, "web", time.Minute, "with both containers running", func(p *corev1.Pod) bool {
		n := 0
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running != nil {
				n++
			}
		}
		return n == 2
	})

	var web, side engine.Container
	testenv.Eventually(t, time.Minute, "both containers listed, the first with its process", func() error {
		list, err := w.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		web, side = engine.Container{}, engine.Container{}
		for _, c := range list {
			// The cluster is shared: other tests' pods are on the list too.
			switch {
			case strings.HasPrefix(c.RunLabel, string(created.UID)+":web:"):
				web = c
			case strings.HasPrefix(c.RunLabel, string(created.UID)+":side:"):
				side = c
			}
		}
		if web.Pid == 0 || side.ID == "" {
			return fmt.Errorf("listed %+v", list)
		}
		return nil
	})
	if side.Pid != 0 || web.NetShared {
		t.Errorf("the second container has process %d (want none: the pod's bytes are the first's); the first's counters shared: %v", side.Pid, web.NetShared)
	}
	// The agent reads the counters so (runtime/agent's sample).
	rx, tx, err := cgroups.ReadNetDev("/proc", web.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if rx < down || tx < up {
		t.Errorf("the pod's counters: %d B received, %d B sent; want at least %d and %d", rx, tx, down, up)
	}
}
