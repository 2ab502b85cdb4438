package collector

import "testing"

func TestReadSlotsBoundEachTenantAndAllReads(t *testing.T) {
	r := newReadSlots(2, 3)
	want := func(tenant, key string) func() {
		t.Helper()
		release, got, limit := r.acquire(tenant)
		switch {
		case key == "" && release == nil:
			t.Fatalf("%s: refused by %s (%d), want a slot", tenant, got, limit)
		case key != "" && (release != nil || got != key):
			t.Fatalf("%s: got a slot or the wrong limit %q, want refused by %s", tenant, got, key)
		}
		return release
	}
	a1, _ := want("caami", ""), want("caami", "")
	want("caami", "max_concurrent_reads_per_tenant")
	o1 := want("ona", "")
	want("ona", "max_concurrent_reads") // ona has a slot of its own left, the collector none
	a1()
	a1() // a release runs once
	want("ona", "")
	want("caami", "max_concurrent_reads")
	o1()
	if r.busy["caami"] != 1 || r.busy["ona"] != 1 || r.all != 2 {
		t.Errorf("after the releases: %v busy, %d in all, want one each, 2 in all", r.busy, r.all)
	}
}
