package supervise

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"

	"github.com/paasmeter/paasmeter/runtime/netwall"
)

// Networks returns the networks this supervisor made (or found made) for the
// institutions of the spec in force, with their bridge interfaces, for the
// network wall (runtime/netwall) to keep apart. A network removed behind the
// supervisor's back is forgotten, so the next pass makes it again.
func (r *Supervisor) Networks(ctx context.Context) ([]netwall.Network, error) {
	r.mu.Lock()
	var insts []string
	for _, inst := range r.spec.Institutions {
		if r.networks[inst.ID] {
			insts = append(insts, inst.ID)
		}
	}
	r.mu.Unlock()
	var out []netwall.Network
	var errs []error
	for _, inst := range insts {
		name := Network(inst)
		in, err := r.o.Docker.NetworkInspect(ctx, name, network.InspectOptions{})
		if cerrdefs.IsNotFound(err) {
			r.mu.Lock()
			delete(r.networks, inst)
			r.mu.Unlock()
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", name, err))
			continue
		}
		out = append(out, netwall.Network{Name: name, Bridge: netwall.Bridge(in)})
	}
	return out, errors.Join(errs...)
}
