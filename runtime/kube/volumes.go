package kube

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/usage"
)

// A persistent volume claim is storage provisioned for a namespace, whether
// or not a pod mounts it (a StatefulSet scaled to zero keeps its disks), and
// a claim that pods on several nodes mount (ReadWriteMany) is still one
// volume. So claims are not billed through the pods that use them: every
// bound claim of a metered namespace is billed once in the cluster, from its
// binding to its deletion, by the agent of one node, its owner (Owner).

// Owner returns the node, of nodes, whose agent bills the claim of uid: the
// one with the highest hash of the claim and the node (rendezvous hashing).
// Every agent computes the same owner from the same nodes, with no
// coordination and no writes to the API server; a node that comes or goes
// moves only the claims it wins or owned, each billed by its old owner up to
// the moment that agent sees the change and by its new one from the moment
// that one does. It returns "" for no nodes.
func Owner(uid string, nodes []string) string {
	var best string
	var bestHash uint64
	for _, n := range nodes {
		sum := sha256.Sum256([]byte(uid + "\x00" + n))
		h := binary.BigEndian.Uint64(sum[:8])
		if best == "" || h > bestHash || (h == bestHash && n < best) {
			best, bestHash = n, h
		}
	}
	return best
}

// billingNodes are the nodes whose agents may own a claim: those Ready and
// not being deleted. The agent's DaemonSet tolerates every taint, so each of
// them runs one; a node that is not Ready has no kubelet to vouch that its
// agent runs, and hands its claims to the others until it is back.
func billingNodes(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		if n.DeletionTimestamp != nil {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				out = append(out, n.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Capacity returns what a claim is billed for: the capacity of the volume
// bound to it (status.capacity.storage: what was provisioned, which may
// exceed the request, and which a resize changes once the volume has grown),
// 0 while it is not bound.
func Capacity(pvc *corev1.PersistentVolumeClaim) uint64 {
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return 0
	}
	q, ok := pvc.Status.Capacity[corev1.ResourceStorage]
	if !ok || q.Sign() <= 0 {
		return 0
	}
	return uint64(q.Value())
}

// ClaimVolume names a claim as a volume: "<namespace>:<claim>", unique in the
// cluster while the claim exists, or, for a name too long for a volume name
// (claims' names may have 253 characters, a volume's 128), "pvc-<uid>", as a
// provisioner names the volume it makes for the claim.
func ClaimVolume(pvc *corev1.PersistentVolumeClaim) string {
	if name := pvc.Namespace + ":" + pvc.Name; len(usage.ValidateIdent(0, "volume", name)) == 0 {
		return name
	}
	return "pvc-" + string(pvc.UID)
}

// Volumes returns the bound claims of the metered namespaces that this node
// owns (Owner), each with its capacity and, as its creation, its binding:
// the later of the claim's creation and its volume's (a provisioner makes the
// volume when it provisions it; a volume that was there before binds when the
// claim is made). A claim that is deleted leaves the list, and the agent
// closes its windows then. The owned claims that are not metered are counted
// by reason, as pods are.
func (w *Watcher) Volumes(ctx context.Context) ([]engine.Volume, error) {
	if err := w.wait(ctx); err != nil {
		return nil, err
	}
	nodes, err := w.nodeList.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	billing := billingNodes(nodes)
	claims, err := w.claimList.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []engine.Volume
	unmetered := map[string]float64{"no_institution": 0, "invalid_labels": 0}
	invalid := map[types.UID]bool{}
	defer func() {
		for reason, n := range unmetered {
			w.unmeteredClaims.WithLabelValues(reason).Set(n)
		}
		// Told once while they stay so, not at every sample.
		w.mu.Lock()
		w.invalidClaims = invalid
		w.mu.Unlock()
	}()
	for _, pvc := range claims {
		size := Capacity(pvc)
		if size == 0 || Owner(string(pvc.UID), billing) != w.o.Node {
			continue
		}
		ns, err := w.nsList.Get(pvc.Namespace)
		if err != nil {
			continue // not in the cache yet: the next sample has it
		}
		id, err := w.o.Config.ClaimIdentity(ns, pvc)
		switch {
		case errors.Is(err, ErrNotMetered):
			unmetered["no_institution"]++
			continue
		case err != nil:
			unmetered["invalid_labels"]++
			invalid[pvc.UID] = true
			w.mu.Lock()
			told := w.invalidClaims[pvc.UID]
			w.mu.Unlock()
			if !told {
				w.log.Warn("claim not metered", "err", err)
			}
			continue
		}
		bound := pvc.CreationTimestamp.Time
		if pv, err := w.pvList.Get(pvc.Spec.VolumeName); err == nil && pv.CreationTimestamp.After(bound) {
			bound = pv.CreationTimestamp.Time
		}
		out = append(out, engine.Volume{Name: ClaimVolume(pvc), Tenant: id.Tenant, Project: id.Project, App: id.App, Env: id.Env,
			SizeBytes: size, Node: w.o.Node, CreatedAt: bound})
	}
	return out, nil
}
