package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A namespace and its first pods are created together, and the namespaces'
// watch runs behind the pods': the pod's identity must not wait for the
// cache. The informers are not started here, so the cache has no namespace
// at all and only the API server knows it; client-go's fake clientset
// stands in for the API server, since no real cluster can be made to lag
// on demand.
func TestAPodWhoseNamespaceTheCacheHasNotSeenIsStillMetered(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-batch", Labels: map[string]string{
		"paasmeter.io/institution": "caami", "paasmeter.io/project": "e2e-batch", "paasmeter.io/environment": "test"}}}
	w, err := New(Options{Config: DefaultConfig(), Node: "node-1", Client: fake.NewClientset(ns)})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "report-x", Namespace: "e2e-batch", Labels: map[string]string{"app.kubernetes.io/name": "report"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "report"}}}}
	id, err := w.identity(pod, "report")
	if err != nil || id.Tenant != "caami" || id.Project != "e2e-batch" {
		t.Fatalf("identity = %+v, %v; want caami's e2e-batch from the API server", id, err)
	}
	pod.Namespace = "gone"
	if _, err := w.identity(pod, "report"); err == nil {
		t.Error("a pod of a namespace nobody knows has an identity")
	}
}
