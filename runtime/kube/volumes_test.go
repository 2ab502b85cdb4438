package kube

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

var (
	readyNow = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
)

func node(name string, conds []corev1.NodeCondition) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: conds}}
}

// named is ns under name.
func named(name string, ns *corev1.Namespace) *corev1.Namespace {
	ns = ns.DeepCopy()
	ns.Name = name
	return ns
}

// claim is a claim of ns requesting 1Gi; bound to a volume of capacity
// unless capacity is "".
func claim(ns, name, capacity string, created time.Time) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
		CreationTimestamp: metav1.NewTime(created)},
		Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}}
	if capacity != "" {
		pvc.Spec.VolumeName = "pv-" + name
		pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}}
	}
	return pvc
}

// volumesOf runs a watcher of node on cs and returns its volumes once its
// caches are filled, by name.
func volumesOf(t *testing.T, cs kubernetes.Interface, nodeName string) map[string]engine.Volume {
	t.Helper()
	v, _ := watchVolumes(t, cs, nodeName)
	return v
}

// watchVolumes is volumesOf, with the watcher that listed them.
func watchVolumes(t *testing.T, cs kubernetes.Interface, nodeName string) (map[string]engine.Volume, *Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := New(Options{Config: DefaultConfig(), Node: nodeName, Client: cs})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	list, err := w.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]engine.Volume{}
	for _, v := range list {
		out[v.Name] = v
	}
	return out, w
}

// TestBoundClaimsAreBilledTheirCapacityByOneNode: a bound claim of a
// metered namespace is a volume of its provisioned capacity (not its
// request), named after it, its app from its label or its name, created at
// its binding, named by its uid when its name is too long; an unbound claim
// and a claim of a namespace without institution are none, one whose app is
// not a name is counted; and each claim is billed by exactly
// one of the Ready nodes.
func TestBoundClaimsAreBilledTheirCapacityByOneNode(t *testing.T) {
	late := t0.Add(time.Minute) // the provisioner made the volume a minute after the claim
	labelled := claim("caami-prod", "db", "10Gi", t0)
	labelled.Labels = map[string]string{"app.kubernetes.io/name": "postgres"}
	long := claim("caami-prod", strings.Repeat("x", 200), "1Gi", t0)
	long.Labels = map[string]string{"app.kubernetes.io/name": "archive"}
	objs := []runtime.Object{
		node("a", readyNow), node("b", readyNow), node("c", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}),
		named("caami-prod", meteredNS), named("kube-system", namespace(nil)),
		labelled,
		&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-db", CreationTimestamp: metav1.NewTime(late)}},
		claim("caami-prod", "cache", "1536Mi", t0),
		claim("caami-prod", "pending", "", t0),
		claim("kube-system", "etcd", "8Gi", t0),
		long,
		claim("caami-prod", "no.app.name", "1Gi", t0),
	}
	for i := range 20 {
		objs = append(objs, claim("caami-prod", fmt.Sprintf("spread-%d", i), "1Gi", t0))
	}
	cs := fake.NewClientset(objs...)
	a, wa := watchVolumes(t, cs, "a")
	b, wb := watchVolumes(t, cs, "b")
	if c := volumesOf(t, cs, "c"); len(c) > 0 {
		t.Errorf("node c, not Ready, bills %v", c)
	}
	all := map[string]engine.Volume{}
	for _, v := range append(slices.Collect(maps.Values(a)), slices.Collect(maps.Values(b))...) {
		if _, twice := all[v.Name]; twice {
			t.Errorf("volume %s is billed by both nodes", v.Name)
		}
		all[v.Name] = v
	}
	// The claim whose name is no app name and which has no app label is not
	// metered, and counted by its owner alone.
	if n := testutil.ToFloat64(wa.unmeteredClaims.WithLabelValues("invalid_labels")) + testutil.ToFloat64(wb.unmeteredClaims.WithLabelValues("invalid_labels")); n != 1 {
		t.Errorf("%g claims counted with invalid labels, want 1", n)
	}
	if len(a) == 0 || len(b) == 0 {
		t.Errorf("22 claims, node a bills %d, node b %d: the owners are not spread", len(a), len(b))
	}
	if len(all) != 23 {
		t.Errorf("%d volumes billed, want the 23 bound claims of caami-prod", len(all))
	}
	want := engine.Volume{Name: "caami-prod:db", Tenant: "caami", Project: "web", App: "postgres", Env: "prod", SizeBytes: 10 << 30,
		Node: all["caami-prod:db"].Node, CreatedAt: late}
	if got := all["caami-prod:db"]; !reflect.DeepEqual(got, want) || (got.Node != "a" && got.Node != "b") {
		t.Errorf("volume %+v, want %+v", got, want)
	}
	if got := all["caami-prod:cache"]; got.App != "cache" || got.SizeBytes != 1536<<20 || !got.CreatedAt.Equal(t0) {
		t.Errorf("a claim without app label or volume in the cache: %+v", got)
	}
	if _, ok := all["pvc-uid-caami-prod-"+strings.Repeat("x", 200)]; !ok {
		t.Errorf("a claim with a long name is not named by its uid: %v", slices.Collect(maps.Keys(all)))
	}
}

// TestAClaimIsBilledItsNewCapacityAfterAResizeAndNothingOnceDeleted: the
// capacity is read at each listing, so a grown claim is its new size (the
// agent closes the old size's windows there); a deleted one is gone.
func TestAClaimIsBilledItsNewCapacityAfterAResizeAndNothingOnceDeleted(t *testing.T) {
	pvc := claim("caami-prod", "db", "1Gi", t0)
	cs := fake.NewClientset(node("a", readyNow), named("caami-prod", meteredNS), pvc)
	if v := volumesOf(t, cs, "a")["caami-prod:db"]; v.SizeBytes != 1<<30 {
		t.Fatalf("before the resize: %+v", v)
	}
	ctx := context.Background()
	pvc.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("5Gi")
	if _, err := cs.CoreV1().PersistentVolumeClaims("caami-prod").UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := volumesOf(t, cs, "a")["caami-prod:db"]; v.SizeBytes != 5<<30 {
		t.Fatalf("after the resize: %+v", v)
	}
	if err := cs.CoreV1().PersistentVolumeClaims("caami-prod").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := volumesOf(t, cs, "a"); len(v) > 0 {
		t.Fatalf("after the deletion: %+v", v)
	}
}

func TestTheOwnerOfAClaimMovesOnlyWhenItsNodeGoes(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	moved := 0
	for i := range 200 {
		uid := fmt.Sprintf("claim-%d", i)
		before := Owner(uid, nodes)
		after := Owner(uid, []string{"n1", "n2", "n4"})
		if before != "n3" && after != before {
			t.Fatalf("claim %s moved from %s to %s though its node stayed", uid, before, after)
		}
		if before == "n3" {
			moved++
		}
	}
	if moved == 0 || moved == 200 {
		t.Errorf("%d of 200 claims were n3's", moved)
	}
	if Owner("x", nil) != "" {
		t.Error("an owner among no nodes")
	}
}
