package institution

import (
	"slices"
	"testing"
	"time"
)

func TestADirectoryKnowsItsInstitutionsAndTheirRetention(t *testing.T) {
	d := Directory{{ID: "caami"}, {ID: "ona", LogRetention: 90 * 24 * time.Hour}}
	for id, want := range map[string]bool{"caami": true, "ona": true, "inami": false, "": false, "CAAMI": false} {
		if got := d.Has(id); got != want {
			t.Errorf("Has(%q) = %v, want %v", id, got, want)
		}
	}
	if got := d.IDs(); !slices.Equal(got, []string{"caami", "ona"}) {
		t.Errorf("IDs() = %v, want the file's order", got)
	}
	if got := d[0].Retention(); got != DefaultLogRetention {
		t.Errorf("a left-out log retention is %s, want the default %s", got, DefaultLogRetention)
	}
	if got := d[1].Retention(); got != 90*24*time.Hour {
		t.Errorf("a configured log retention is %s, want 2160h", got)
	}
	if got := Of("caami", "ona"); !slices.Equal(got.IDs(), d.IDs()) || got[1].LogRetention != 0 {
		t.Errorf("Of(caami, ona) = %+v", got)
	}
}
