package kubernetes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	routev1 "github.com/openshift/api/route/v1"
	securityv1 "github.com/openshift/api/security/v1"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/deploy/kubernetes"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
)

// The directories kubectl apply -k is given, relative to this package.
const (
	baseDir      = "."
	openshiftDir = "openshift"
)

// The kinds the OpenShift overlay adds that a plain Kubernetes cluster does not serve.
var openshiftOnly = []string{"PrometheusRule", "Route", "SecurityContextConstraints"}

func TestPrometheusRuleIsUpToDate(t *testing.T) {
	want, err := kubernetes.PrometheusRule(kubernetes.RulesDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(kubernetes.PrometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go generate ./deploy/kubernetes` (it is generated from %s)", kubernetes.PrometheusRuleFile, kubernetes.RulesDir)
	}
}

// ruleGroups is what a rule file, and a PrometheusRule's spec, holds.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert"`
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// rules returns the alert and record names of g, each with its expression.
func (g ruleGroups) rules() []string {
	var out []string
	for _, gr := range g.Groups {
		for _, r := range gr.Rules {
			out = append(out, gr.Name+"/"+r.Alert+r.Record+": "+r.Expr)
		}
	}
	return out
}

// TestPrometheusRuleLoads checks that the PrometheusRule carries every alert
// and recording rule of the rule files, with expressions that parse.
// (promtool checks the rule files themselves: deploy/prometheus.)
func TestPrometheusRuleLoads(t *testing.T) {
	b, err := os.ReadFile(kubernetes.PrometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Metadata   json.RawMessage `json:"metadata"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := sigsyaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %s %s", kubernetes.PrometheusRuleFile, pr.APIVersion, pr.Kind)
	}
	var spec ruleGroups
	if err := sigsyaml.Unmarshal(pr.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(kubernetes.RulesDir, "*.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g ruleGroups
		if err := sigsyaml.Unmarshal(b, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, g.rules()...)
	}
	got := spec.rules()
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("the PrometheusRule's rules:\n%s\nthe rule files':\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range got {
		if _, err := parser.ParseExpr(r[strings.Index(r, ": ")+2:]); err != nil {
			t.Errorf("%s: %v", r, err)
		}
	}
}

func TestBase(t *testing.T) {
	objs := render(t, baseDir)
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if slices.Contains(openshiftOnly, o.GetKind()) {
			t.Errorf("the base has a %s: only the OpenShift overlay may", o.GetKind())
		}
		if o.GetKind() != "Namespace" && o.GetNamespace() != "paasmeter" && !strings.HasPrefix(o.GetKind(), "Cluster") {
			t.Errorf("%s %s is in namespace %q, not paasmeter", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("the base has no %s (it has %v)", k, kinds)
		}
	}

	var role rbacv1.ClusterRole
	decode(t, find(t, objs, "ClusterRole", "paasmeter-agent"), &role)
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, v) {
				t.Errorf("the agent's ClusterRole grants %q on %v: it only reads", v, r.Resources)
			}
		}
	}
	for _, res := range []string{"pods", "namespaces", "persistentvolumeclaims", "persistentvolumes", "nodes"} {
		if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, res) }) {
			t.Errorf("the agent's ClusterRole does not let it read %s", res)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
			if strings.Contains(mustJSON(t, o.Object), `"paasmeter-collector"`) {
				t.Errorf("%s %s binds the collector to a role: it needs none", o.GetKind(), o.GetName())
			}
		}
	}

	var coll appsv1.Deployment
	decode(t, find(t, objs, "Deployment", "paasmeter-collector"), &coll)
	if coll.Spec.Replicas == nil || *coll.Spec.Replicas != 2 {
		t.Errorf("collector replicas: %v, want 2", coll.Spec.Replicas)
	}
	pod := coll.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the collector may run as root: runAsNonRoot is not true")
	}
	c := onlyContainer(t, pod)
	restricted(t, "collector", pod, c)
	if c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the collector's root file system is writable")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("the collector's readiness probe is %+v, want GET /readyz", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
		t.Error("the collector has no HTTP liveness probe")
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Error("the collector has no memory limit or CPU request")
	}
	var svc corev1.Service
	decode(t, find(t, objs, "Service", "paasmeter-collector"), &svc)
	if !selects(svc.Spec.Selector, coll.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the collector's pods %v", svc.Spec.Selector, coll.Spec.Template.Labels)
	}
	find(t, objs, "PodDisruptionBudget", "paasmeter-collector")

	var ds appsv1.DaemonSet
	decode(t, find(t, objs, "DaemonSet", "paasmeter-agent"), &ds)
	apod := ds.Spec.Template.Spec
	a := onlyContainer(t, apod)
	restricted(t, "agent", apod, a)
	if a.SecurityContext.Privileged != nil && *a.SecurityContext.Privileged {
		t.Error("the agent is privileged")
	}
	// The host's PID namespace, where cgroup.procs names a pod's processes as
	// /proc does; not its network or IPC.
	if !apod.HostPID || apod.HostNetwork || apod.HostIPC {
		t.Errorf("the agent's pod: host PID %v, network %v, IPC %v; want the PID namespace alone", apod.HostPID, apod.HostNetwork, apod.HostIPC)
	}
	if a.Resources.Limits.Memory().IsZero() || a.Resources.Limits.Cpu().IsZero() || a.Resources.Requests.Cpu().IsZero() {
		t.Error("the agent lacks a CPU or memory limit, or a CPU request")
	}
	if !slices.ContainsFunc(a.Env, func(e corev1.EnvVar) bool {
		return e.Name == "PAASMETER_NODE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("the agent's node name (PAASMETER_NODE) is not the downward API's spec.nodeName")
	}
	hostPaths := map[string]bool{"/sys/fs/cgroup": true, "/var/log/pods": true, "/var/lib/paasmeter-agent": false} // path → mounted read-only
	for path, ro := range hostPaths {
		i := slices.IndexFunc(apod.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil && v.HostPath.Path == path })
		if i < 0 {
			t.Errorf("the agent has no hostPath volume %s", path)
			continue
		}
		j := slices.IndexFunc(a.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == apod.Volumes[i].Name })
		if j < 0 {
			t.Errorf("the agent does not mount hostPath %s", path)
		} else if a.VolumeMounts[j].ReadOnly != ro {
			t.Errorf("hostPath %s: read-only %v, want %v", path, a.VolumeMounts[j].ReadOnly, ro)
		}
	}
	for _, v := range apod.Volumes {
		if v.HostPath != nil {
			if _, ok := hostPaths[v.HostPath.Path]; !ok {
				t.Errorf("the agent mounts host path %s, which it does not need", v.HostPath.Path)
			}
		}
	}

	for _, name := range []string{"paasmeter-agent-tokens", "paasmeter-store-dsns"} {
		var s corev1.Secret
		decode(t, find(t, objs, "Secret", name), &s)
		for k, v := range s.StringData {
			if !strings.Contains(k+v, "REPLACE-ME") {
				t.Errorf("Secret %s key %s is not a placeholder an operator must replace", name, k)
			}
		}
	}
	for _, pc := range [][]corev1.Container{pod.Containers, apod.Containers} {
		if img := pc[0].Image; !strings.HasPrefix(img, "localhost/paasmeter:") {
			t.Errorf("image %q is not the one `make image` names (localhost/paasmeter:<version>)", img)
		}
	}

	// The collector's configuration loads as the pod gives it: its
	// placeholders replaced, its DSNs from the Secret's environment.
	var cm corev1.ConfigMap
	decode(t, findPrefix(t, objs, "ConfigMap", "paasmeter-collector-config"), &cm)
	yml := strings.NewReplacer("REPLACE-ME-node-name", "node-a",
		"REPLACE-ME-sha256-of-the-node-s-agent-token", strings.Repeat("ab", 32),
		"REPLACE-ME-sha256-of-the-admin-token", strings.Repeat("cd", 32)).Replace(cm.Data["paasmeter.yaml"])
	env := map[string]string{
		"PAASMETER_STATE_DSN":    "postgres://paasmeter@db:5432/paasmeter",
		"PAASMETER_METERING_DSN": "clickhouse://ch:9000/paasmeter",
	}
	if _, err := config.Parse([]byte(yml), "the collector's ConfigMap", func(k string) string { return env[k] }); err != nil {
		t.Error(err)
	}
	// The agent's loads as a Kubernetes node's, with the node's name the
	// downward API gives it.
	var acm corev1.ConfigMap
	decode(t, findPrefix(t, objs, "ConfigMap", "paasmeter-agent-config"), &acm)
	acfg, err := config.Parse([]byte(acm.Data["paasmeter.yaml"]), "the agent's ConfigMap", func(k string) string {
		return map[string]string{"PAASMETER_NODE": "node-a"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if acfg.Agent.Kind != "kubernetes" {
		t.Errorf("the agent's ConfigMap runs agent.kind %q, want kubernetes", acfg.Agent.Kind)
	}
}

func TestOpenShift(t *testing.T) {
	objs := render(t, openshiftDir)

	var scc securityv1.SecurityContextConstraints
	sccObj := find(t, objs, "SecurityContextConstraints", "paasmeter-agent")
	decode(t, sccObj, &scc)
	if sccObj.GetAPIVersion() != securityv1.GroupVersion.String() {
		t.Errorf("SCC apiVersion %s, want %s", sccObj.GetAPIVersion(), securityv1.GroupVersion)
	}
	if scc.Namespace != "" {
		t.Errorf("the SCC is cluster-scoped, yet in namespace %s", scc.Namespace)
	}
	// The host's PID namespace alone: a pod's network bytes are read from its processes.
	if scc.AllowPrivilegedContainer || scc.AllowHostNetwork || !scc.AllowHostPID || scc.AllowHostIPC || scc.AllowHostPorts {
		t.Error("the agent's SCC allows a privileged container or host namespaces but PID, or not PID")
	}
	if !scc.AllowHostDirVolumePlugin || !slices.Contains(scc.RequiredDropCapabilities, "ALL") || len(scc.AllowedCapabilities) > 0 {
		t.Error("the agent's SCC must allow host paths and drop every capability")
	}
	if scc.AllowPrivilegeEscalation == nil || *scc.AllowPrivilegeEscalation {
		t.Error("the agent's SCC allows privilege escalation")
	}

	var role rbacv1.Role
	decode(t, find(t, objs, "Role", "paasmeter-agent-scc"), &role)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"use"}) || !slices.Equal(role.Rules[0].ResourceNames, []string{scc.Name}) {
		t.Errorf("Role paasmeter-agent-scc grants %+v, want only use of SCC %s", role.Rules, scc.Name)
	}

	var route routev1.Route
	routeObj := find(t, objs, "Route", "paasmeter-collector")
	decode(t, routeObj, &route)
	if routeObj.GetAPIVersion() != routev1.GroupVersion.String() {
		t.Errorf("Route apiVersion %s, want %s", routeObj.GetAPIVersion(), routev1.GroupVersion)
	}
	var svc corev1.Service
	decode(t, find(t, objs, "Service", route.Spec.To.Name), &svc)
	if route.Spec.Port == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == route.Spec.Port.TargetPort.String() }) {
		t.Errorf("the Route's port %v is none of Service %s's", route.Spec.Port, svc.Name)
	}
	if route.Spec.TLS == nil || (route.Spec.TLS.Termination != routev1.TLSTerminationEdge && route.Spec.TLS.Termination != routev1.TLSTerminationReencrypt) ||
		route.Spec.TLS.InsecureEdgeTerminationPolicy == routev1.InsecureEdgeTerminationPolicyAllow {
		t.Errorf("the Route's TLS is %+v: want edge or reencrypt, no plain HTTP", route.Spec.TLS)
	}

	// restricted-v2: no fixed UID anywhere in the collector's pod.
	var coll appsv1.Deployment
	decode(t, find(t, objs, "Deployment", "paasmeter-collector"), &coll)
	pod := coll.Spec.Template.Spec
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil {
		t.Errorf("the collector's pod fixes UID %d: restricted-v2 assigns one", *pod.SecurityContext.RunAsUser)
	}
	for _, c := range pod.Containers {
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			t.Errorf("container %s fixes UID %d: restricted-v2 assigns one", c.Name, *c.SecurityContext.RunAsUser)
		}
		restricted(t, "collector", pod, c)
	}

	pr := find(t, objs, "PrometheusRule", "paasmeter")
	want, err := os.ReadFile(kubernetes.PrometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	var wantObj map[string]any
	if err := sigsyaml.Unmarshal(want, &wantObj); err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, pr.Object["spec"]) != mustJSON(t, wantObj["spec"]) {
		t.Errorf("the overlay's PrometheusRule is not %s", kubernetes.PrometheusRuleFile)
	}
}

// TestServerDryRun has the test cluster's API server check both
// renderings, every object of a kind it serves, as `kubectl apply
// --dry-run=server` does. A dry run creates nothing, so a namespace the
// render creates does not exist for the objects in it: they go to a
// namespace of the test's own instead, the render's Namespace object
// applied to it.
func TestServerDryRun(t *testing.T) {
	cl := kubetest.New(t)
	kc := kubetest.Kubectl(t)
	for _, dir := range []string{baseDir, openshiftDir} {
		t.Run(dir, func(t *testing.T) {
			ns := cl.Namespace(t, nil)
			var served, lacking []*unstructured.Unstructured
			for _, o := range render(t, dir) {
				if !serves(t, cl, o) {
					lacking = append(lacking, o)
					continue
				}
				served = append(served, o)
			}
			var lackingKinds []string
			for _, o := range lacking {
				lackingKinds = append(lackingKinds, o.GetKind())
				// The strict decoding of TestOpenShift is what checks these.
				if !slices.Contains(openshiftOnly, o.GetKind()) {
					t.Errorf("the test cluster does not serve %s %s", o.GetAPIVersion(), o.GetKind())
				}
			}
			if dir == baseDir && len(lacking) > 0 {
				t.Errorf("the base has kinds a plain cluster lacks: %v", lackingKinds)
			}
			list := map[string]any{"apiVersion": "v1", "kind": "List", "items": inNamespace(t, served, "paasmeter", ns)}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, kc, "--kubeconfig", os.Getenv(kubetest.KubeconfigEnv), "apply", "--dry-run=server", "-f", "-")
			cmd.Stdin = strings.NewReader(mustJSON(t, list))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server of %s: %v\n%s", dir, err, out)
			}
			if n := strings.Count(string(out), "(server dry run)"); n != len(served) {
				t.Errorf("the server dry-ran %d objects of %d:\n%s", n, len(served), out)
			}
		})
	}
}

// render is `kubectl kustomize dir`, object by object.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(kubetest.Kubectl(t), "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		objs = append(objs, &o)
	}
	if len(objs) == 0 {
		t.Fatalf("kubectl kustomize %s rendered nothing", dir)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// findPrefix finds a generated object, whose name ends with its content's hash.
func findPrefix(t *testing.T, objs []*unstructured.Unstructured, kind, prefix string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && strings.HasPrefix(o.GetName(), prefix+"-") {
			return o
		}
	}
	t.Fatalf("no %s %s-<hash>", kind, prefix)
	return nil
}

// decode decodes o into its Go type strictly: a field the type lacks (a
// misspelt or misplaced key, which the API server would drop or refuse)
// fails the test.
func decode(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(mustJSON(t, o.Object)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s %s does not decode strictly as %T: %v", o.GetKind(), o.GetName(), into, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func onlyContainer(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	return pod.Containers[0]
}

// restricted checks what both pods share: no privilege escalation, every
// capability dropped, the runtime's default seccomp profile.
func restricted(t *testing.T, what string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("the %s may escalate privileges", what)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("the %s does not drop every capability and add none", what)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("the %s's root file system is writable", what)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the %s's pod does not use the RuntimeDefault seccomp profile", what)
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// serves says whether the cluster serves o's kind.
func serves(t *testing.T, cl *kubetest.Cluster, o *unstructured.Unstructured) bool {
	t.Helper()
	res, err := cl.Client.Discovery().ServerResourcesForGroupVersion(o.GetAPIVersion())
	if err != nil {
		return false
	}
	return slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Kind == o.GetKind() })
}

// inNamespace moves objs from namespace from to namespace to: the Namespace
// object itself, the objects in it, and the service accounts bindings name.
func inNamespace(t *testing.T, objs []*unstructured.Unstructured, from, to string) []any {
	t.Helper()
	var items []any
	for _, o := range objs {
		o = o.DeepCopy()
		if o.GetKind() == "Namespace" && o.GetName() == from {
			o.SetName(to)
		}
		if o.GetNamespace() == from {
			o.SetNamespace(to)
		}
		if subjects, ok := o.Object["subjects"].([]any); ok {
			for _, s := range subjects {
				if m, ok := s.(map[string]any); ok && m["namespace"] == from {
					m["namespace"] = to
				}
			}
		}
		items = append(items, o.Object)
	}
	return items
}

// TestApplyCollectorReady applies the base's collector for real, in a
// namespace of the test's own, with the image `make image` builds loaded
// into the node, and waits for its two replicas to become Ready (/readyz).
// Without PostgreSQL and ClickHouse in the cluster, the DSNs' environment is
// dropped: each replica runs on its embedded store, in its emptyDir. The
// cluster-wide objects (the agent's ClusterRole and binding) and the agent's
// DaemonSet are the server dry run's alone.
func TestApplyCollectorReady(t *testing.T) {
	cl := kubetest.New(t)
	kc := kubetest.Kubectl(t)
	img := kubetest.PaasmeterImage(t)
	cl.LoadImage(t, img.Path)
	ns := cl.Namespace(t, nil)

	var objs []*unstructured.Unstructured
	for _, o := range render(t, baseDir) {
		switch {
		case strings.HasPrefix(o.GetKind(), "Cluster"), o.GetKind() == "DaemonSet":
			continue
		case o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), "paasmeter-collector-config-"):
			yml, _, _ := unstructured.NestedString(o.Object, "data", "paasmeter.yaml")
			yml = strings.NewReplacer("REPLACE-ME-node-name", "node-a",
				"REPLACE-ME-sha256-of-the-node-s-agent-token", strings.Repeat("ab", 32),
				"REPLACE-ME-sha256-of-the-admin-token", strings.Repeat("cd", 32)).Replace(yml)
			if err := unstructured.SetNestedField(o.Object, yml, "data", "paasmeter.yaml"); err != nil {
				t.Fatal(err)
			}
		case o.GetKind() == "Deployment":
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			c["image"] = img.Ref
			c["imagePullPolicy"] = "Never"
			delete(c, "env")
			if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
		}
		objs = append(objs, o)
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": inNamespace(t, objs, "paasmeter", ns)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kc, "--kubeconfig", os.Getenv(kubetest.KubeconfigEnv), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(mustJSON(t, list))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}

	// The Deployment counts its Ready pods: watch it until both are.
	cl.WaitDeployment(t, ns, "paasmeter-collector", 3*time.Minute, "two replicas Ready", func(d *appsv1.Deployment) bool {
		return d.Status.ReadyReplicas == 2 && d.Status.UpdatedReplicas == 2
	})
}
