package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestAPodsNetworkIsBilledToItsFirstAppContainerUnlessOnTheHostsNetwork(t *testing.T) {
	p := pod("web", corev1.RestartPolicyAlways, corev1.Container{Name: "web"}, corev1.Container{Name: "proxy"})
	p.Spec.InitContainers = []corev1.Container{{Name: "migrate"}}
	for _, tc := range []struct {
		r    Run
		want bool
	}{
		{Run{Container: "web"}, true},
		{Run{Container: "web", N: 3}, true},
		{Run{Container: "proxy"}, false},
		{Run{Container: "migrate", Init: true}, false},
	} {
		if got := NetworkRun(p, tc.r); got != tc.want {
			t.Errorf("run %+v: billed the network %v, want %v", tc.r, got, tc.want)
		}
	}
	p.Spec.HostNetwork = true
	if NetworkRun(p, Run{Container: "web"}) {
		t.Error("a pod on the host's network is billed the node's traffic")
	}
}
