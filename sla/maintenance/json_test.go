package maintenance_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

func TestDecodeDeclaration(t *testing.T) {
	cet := time.FixedZone("", 3600)
	body := `{"tenant":"caami","project":"pricing","app":"api","start":"2026-12-10T22:00:00+01:00","duration":"90m",
		"recurrence":{"every":"weekly","until":"2027-03-01T00:00:00Z"},"reason":"patches","version":3,
		"declared_at":"2020-01-01T00:00:00Z","source":"config","cancelled":false}`
	got, err := maintenance.DecodeDeclaration([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := maintenance.Declaration{Scope: sla.Scope{Tenant: "caami", Project: "pricing", App: "api"},
		Start: time.Date(2026, 12, 10, 22, 0, 0, 0, cet), Duration: 90 * time.Minute,
		Recurrence: &maintenance.Recurrence{Every: "weekly", Until: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)}, Reason: "patches", Version: 3}
	if !sameDeclaration(got, want) {
		t.Errorf("decoded\n%+v\nwant (declared_at and source are the server's, ignored)\n%+v", got, want)
	}
}

func TestDecodeDeclarationNamesTheField(t *testing.T) {
	tests := map[string]struct{ body, field string }{
		"a start that is not RFC 3339":       {`{"start":"10/12/2026 22:00","duration":"1h"}`, "start"},
		"a date without time":                {`{"start":"2026-12-10","duration":"1h"}`, "start"},
		"a start given as a number":          {`{"start":1765400400,"duration":"1h"}`, "start"},
		"a duration without unit":            {`{"start":"2026-12-10T22:00:00Z","duration":"90"}`, "duration"},
		"a duration given as a number":       {`{"start":"2026-12-10T22:00:00Z","duration":5400}`, "duration"},
		"an until that is not a time":        {`{"start":"2026-12-10T22:00:00Z","recurrence":{"every":"daily","until":"never"}}`, "recurrence.until"},
		"an every that is not a string":      {`{"recurrence":{"every":7}}`, "recurrence.every"},
		"a recurrence that is not an object": {`{"recurrence":"weekly"}`, "recurrence"},
		"a version that is not a number":     {`{"version":"3"}`, "version"},
		"a cancelled that is not a boolean":  {`{"cancelled":"yes"}`, "cancelled"},
		"a field the form lacks":             {`{"start":"2026-12-10T22:00:00Z","end":"2026-12-10T23:00:00Z"}`, "end"},
		"a field the recurrence lacks":       {`{"recurrence":{"every":"daily","count":3}}`, "recurrence.count"},
		"JSON cut short":                     {`{"start":"2026-12-10T22:00:00Z"`, "body"},
		"not JSON":                           {`start=2026-12-10`, "body"},
		"an empty body":                      {``, "body"},
		"null":                               {`null`, "body"},
		"an array":                           {`[{"start":"2026-12-10T22:00:00Z"}]`, "body"},
		"two objects":                        {`{} {}`, "body"},
		"a repeated key":                     {`{"tenant":"caami","tenant":"ona","start":"2026-12-10T22:00:00Z"}`, "tenant"},
		"a key repeated in the recurrence":   {`{"recurrence":{"every":"daily","every":"weekly"}}`, "recurrence.every"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := maintenance.DecodeDeclaration([]byte(tt.body))
			var fe *maintenance.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("DecodeDeclaration(%s) = %v, want an error naming %s", tt.body, err, tt.field)
			}
		})
	}
}

func TestDeclarationJSONRoundTrips(t *testing.T) {
	bxl := clocktest.Brussels(t)
	d := maintenance.Declaration{ID: "nightly", Scope: sla.Scope{Tenant: "caami"}, Start: time.Date(2026, 12, 10, 22, 0, 0, 0, bxl),
		Duration: 2 * time.Hour, Recurrence: &maintenance.Recurrence{Every: maintenance.Daily}, Reason: "backups",
		DeclaredAt: time.Date(2026, 12, 1, 9, 0, 0, 0, bxl), Version: 2, Source: maintenance.SourceConfig}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"nightly","tenant":"caami","start":"2026-12-10T22:00:00+01:00","duration":"2h0m0s","recurrence":{"every":"daily"},` +
		`"reason":"backups","declared_at":"2026-12-01T09:00:00+01:00","cancelled":false,"version":2,"source":"config"}`
	if string(b) != want {
		t.Errorf("json.Marshal =\n%s\nwant\n%s", b, want)
	}
	got, err := maintenance.DecodeDeclaration(b)
	if err != nil {
		t.Fatal(err)
	}
	d.DeclaredAt, d.Source = time.Time{}, "" // the server's, not read back
	if !sameDeclaration(got, d) {
		t.Errorf("read back as\n%+v\nwant\n%+v", got, d)
	}
}

// sameDeclaration compares declarations, their times as instants.
func sameDeclaration(a, b maintenance.Declaration) bool {
	ar, br := a.Recurrence, b.Recurrence
	a.Recurrence, b.Recurrence = nil, nil
	if (ar == nil) != (br == nil) || (ar != nil && (ar.Every != br.Every || !ar.Until.Equal(br.Until))) {
		return false
	}
	if !a.Start.Equal(b.Start) || !a.DeclaredAt.Equal(b.DeclaredAt) {
		return false
	}
	a.Start, b.Start, a.DeclaredAt, b.DeclaredAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// FuzzDecodeDeclaration checks that any body either decodes into a
// declaration that writes and reads back the same, or is refused naming a
// field; never a panic.
func FuzzDecodeDeclaration(f *testing.F) {
	for _, seed := range []string{
		`{"tenant":"caami","start":"2026-12-10T22:00:00+01:00","duration":"2h","reason":"r"}`,
		`{"id":"7","start":"2026-12-10T22:00:00.5Z","duration":"1h30m","recurrence":{"every":"monthly","until":"2027-12-31T23:59:59+14:00"},"version":9}`,
		`{"recurrence":null,"cancelled":true,"duration":"-5m","start":""}`,
		`{"tenant":"caami","tenant":"ona","start":"2026-12-10T22:00:00+01:00","duration":"2h","reason":"r"}`,
		`{"recurrence":{"every":"monthly","every":"weekly"}}`,
		`{"start":"0000-01-01T00:00:00Z"}`, `{"duration":"9223372036854775807ns"}`, `{"a":1}`, `[]`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := maintenance.DecodeDeclaration(body)
		if err != nil {
			var fe *maintenance.FieldError
			if !errors.As(err, &fe) || fe.Field == "" || !strings.HasPrefix(err.Error(), fe.Field+": ") {
				t.Fatalf("DecodeDeclaration(%q) = %v, want a *FieldError naming a field", body, err)
			}
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) of a decoded declaration: %v", d, err)
		}
		again, err := maintenance.DecodeDeclaration(b)
		if err != nil {
			t.Fatalf("what %q decoded into writes as %s, which does not decode: %v", body, b, err)
		}
		if !sameDeclaration(again, d) {
			t.Fatalf("%q decoded into\n%+v\nwhich writes as %s and reads back as\n%+v", body, d, b, again)
		}
		// Whatever decodes, the rules either accept or refuse naming a field.
		if err := maintenance.Check(nil, d, now, lead); err != nil {
			if _, ok := maintenance.IsRefusal(err); !ok {
				t.Fatalf("Check(%+v) = %v, not a *FieldError", d, err)
			}
		}
	})
}
