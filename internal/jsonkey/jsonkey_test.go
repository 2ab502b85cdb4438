package jsonkey

import "testing"

func TestRepeated(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{`{"tenant":"caami","tenant":"ona"}`, "tenant"},
		{`{"tenant":"caami","Tenant":"ona"}`, "Tenant"},
		{`{"tenant":"caami","ten\u0061nt":"ona"}`, "tenant"},
		{`{"records":[{"a":1},{"a":1,"b":{"c":2,"C":3}}]}`, "records[1].b.C"},
		{`{"streams":[{"stream":{"app":"x","app":"y"}}]}`, "streams[0].stream.app"},
		{`{"\u212a":1,"k":2}`, "k"}, // the Kelvin sign matches k in encoding/json
		{`{"ſ":1,"s":2}`, "s"},
	} {
		got, ok := Repeated([]byte(c.in))
		if !ok || got != c.want {
			t.Errorf("Repeated(%s) = %q, %v; want %q, true", c.in, got, ok, c.want)
		}
	}
	for _, in := range []string{
		`{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`,
		`[{"a":1},{"a":2}]`, `"x"`, `12`, `{}`, ``,
		`{"a":1,"b"`, // invalid: the decoder reports it
	} {
		if got, ok := Repeated([]byte(in)); ok {
			t.Errorf("Repeated(%s) = %q, true; want no repeat", in, got)
		}
	}
}
