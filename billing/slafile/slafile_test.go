package slafile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
)

func TestParse(t *testing.T) {
	nov := calendar.Month{Year: 2026, Month: time.November, Loc: time.UTC}
	tests := []struct {
		name    string
		in      string
		wantErr []string
		check   func(t *testing.T, f *File)
	}{
		{name: "an institution's month is served with its availability",
			in: "- {tenant: caami, period: 2026-11, availability: 99.85}\n",
			check: func(t *testing.T, f *File) {
				fig, ok, err := f.SLA(context.Background(), "caami", nov)
				if err != nil || !ok || fig.Availability.String() != "99.85" {
					t.Errorf("SLA = %+v, %v, %v; want 99.85", fig, ok, err)
				}
			}},
		{name: "a month missing from the file has no figures",
			in: "- {tenant: caami, period: 2026-10, availability: 90}\n",
			check: func(t *testing.T, f *File) {
				if _, ok, _ := f.SLA(context.Background(), "caami", nov); ok {
					t.Error("November was served from an October line")
				}
			}},
		{name: "an empty file lists nothing", in: ""},
		{name: "bad lines are refused naming the index and field",
			in:      "- {tenant: '', period: 2026-13, availability: 101}\n- {tenant: ona, period: 2026-11, availability: abc}\n",
			wantErr: []string{"[0].tenant", "[0].period", "[0].availability", "[1].availability"}},
		{name: "a month listed twice is refused", in: "- {tenant: ona, period: 2026-11, availability: 99}\n- {tenant: ona, period: 2026-11, availability: 98}\n",
			wantErr: []string{"listed twice"}},
		{name: "unknown fields are refused", in: "- {tenant: ona, period: 2026-11, availability: 99, credit: 10}\n", wantErr: []string{"credit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in), "sla.yaml")
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("- {tenant: caami, period: 2026-11, availability: 99.85}\n"))
	f.Add([]byte("[]"))
	f.Add([]byte("- tenant: x\n  period: 2026-01\n  availability: 100\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		for k, a := range file.figs {
			if a.IsNegative() || a.GreaterThan(hundred) || k[0] == "" {
				t.Fatalf("accepted %v = %s", k, a)
			}
		}
	})
}
