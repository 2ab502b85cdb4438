package kubetest_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
)

// TestThePaasmeterImageRunsOnTheCluster builds the paasmeter image as
// `make image` does (FROM scratch, no Docker daemon), imports it into the
// test node's containerd, runs `paasmeter --version` as a pod of a labelled
// namespace, and reads the version this build was given back from the pod's
// log: the static binary runs in an image that holds nothing else.
func TestThePaasmeterImageRunsOnTheCluster(t *testing.T) {
	t.Parallel()
	c := kubetest.New(t)
	img := kubetest.PaasmeterImage(t)
	c.LoadImage(t, img.Path)
	ns := c.Namespace(t, map[string]string{"paasmeter.io/institution": "caami"})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "version", Labels: map[string]string{"app.kubernetes.io/name": "paasmeter"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{
				Name: "paasmeter", Image: img.Ref, ImagePullPolicy: corev1.PullNever,
				Args: []string{"--version"},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := c.WaitPodPhase(t, ns, pod.Name, 2*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
	logs := c.Logs(t, ns, pod.Name, "paasmeter")
	if done.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("paasmeter --version ended %s: %v\n%s", done.Status.Phase, done.Status.ContainerStatuses, logs)
	}
	if want := "paasmeter version " + img.Version; strings.TrimSpace(logs) != want {
		t.Errorf("paasmeter --version in the pod printed %q, want %q", logs, want)
	}
	if uid := done.Status.ContainerStatuses[0].User; uid != nil && uid.Linux != nil && uid.Linux.UID != 65532 {
		t.Errorf("the image ran as uid %d, want the image's nonroot 65532", uid.Linux.UID)
	}
}

// TestTheBusyboxImageRunsOnTheCluster runs the node's busybox image, the
// tests' workload image, as a pod the scheduler places, to an end that fails
// with exit code 3, and reads that code and the pod's log back through the
// API.
func TestTheBusyboxImageRunsOnTheCluster(t *testing.T) {
	t.Parallel()
	c := kubetest.New(t)
	ns := c.Namespace(t, nil)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{
				Name: "sh", Image: c.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo hello from $(hostname); exit 3"},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := c.WaitPodPhase(t, ns, pod.Name, 2*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
	if done.Status.Phase != corev1.PodFailed {
		t.Fatalf("a container that exits 3 left its pod %s", done.Status.Phase)
	}
	term := done.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.ExitCode != 3 {
		t.Fatalf("container state %+v, want terminated with exit code 3", done.Status.ContainerStatuses[0].State)
	}
	if got, want := c.Logs(t, ns, pod.Name, "sh"), "hello from hello\n"; got != want {
		t.Errorf("logs %q, want %q", got, want)
	}
}
